#!/usr/bin/env bash
# Start a single-node SLURM (munged + slurmctld + slurmd) on this machine, for the
# SLURM tests and for trying the workflow's slurm profiles by hand.
#
#   sudo tests/slurm/start_cluster.sh      # idempotent: a running, healthy cluster is left alone
#   sudo tests/slurm/stop_cluster.sh
#
# Debian/Ubuntu only (apt-get). Needs root. No accounting database: sacct/sacctmgr do not
# work here, which is why the profiles use `slurm-status-command: squeue` and set no account.
# The config goes to /etc/slurm/slurm.conf, the compiled-in default path: the executor's
# job-step plugin drops SLURM_CONF from the job environment before its inner `srun`.
#
# Environment knobs:
#   SLURM_TEST_MEM_HEADROOM_MB  memory kept back from SLURM (default: max(1024, 10 % of RAM))
#   SLURM_TEST_WAIT_S           how long to wait for the node to become idle (default 60)
#
# Exit status: 0 the cluster runs; 77 it cannot be started on this machine (not root, or the
# packages are missing and cannot be installed: the SLURM tests skip); 1 it was installed but
# failed to come up (the SLURM tests fail).
set -euo pipefail

CONF_DIR=/etc/slurm
CONF=$CONF_DIR/slurm.conf
STATE_DIR=/var/spool/slurmctld
SPOOL_DIR=/var/spool/slurmd
LOG_DIR=/var/log/slurm
RUN_DIR=/run/slurm
MUNGE_RUN=/run/munge
MUNGE_KEY=/etc/munge/munge.key
WAIT_S=${SLURM_TEST_WAIT_S:-60}

say() { printf 'start_cluster: %s\n' "$*" >&2; }
die() { say "ERROR: $*"; exit 1; }
cannot() { say "cannot start a cluster here: $*"; exit 77; }

[[ $(id -u) -eq 0 ]] || cannot "must run as root (it installs packages and starts daemons); try: sudo $0"

# --- 1. packages ----------------------------------------------------------------------
need=()
command -v munged >/dev/null || need+=(munge)
command -v slurmctld >/dev/null || need+=(slurmctld)
command -v slurmd >/dev/null || need+=(slurmd)
command -v sbatch >/dev/null || need+=(slurm-client)
if ((${#need[@]})); then
    command -v apt-get >/dev/null || cannot "missing ${need[*]} and no apt-get to install them"
    say "installing ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    # --no-install-recommends: the recommends pull in a mail server and docs, not needed.
    if ! apt-get install -y -q --no-install-recommends "${need[@]}" >/tmp/slurm-apt.log 2>&1; then
        apt-get update -q >>/tmp/slurm-apt.log 2>&1 || true   # stale/missing lists on a fresh image
        apt-get install -y -q --no-install-recommends "${need[@]}" >>/tmp/slurm-apt.log 2>&1 \
            || { tail -20 /tmp/slurm-apt.log >&2; cannot "apt-get install ${need[*]} failed (log: /tmp/slurm-apt.log)"; }
    fi
fi

# Without systemd as PID 1 (containers, firecracker VMs) the packages' services never start
# and some postinst steps may not have run: create what the daemons need ourselves.
id -u munge >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin munge
id -u slurm >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin slurm

# --- 2. munge -------------------------------------------------------------------------
install -d -o munge -g munge -m 0700 /etc/munge /var/lib/munge /var/log/munge
install -d -o munge -g munge -m 0755 "$MUNGE_RUN"
if [[ ! -s $MUNGE_KEY ]]; then
    say "creating $MUNGE_KEY"
    if command -v mungekey >/dev/null; then mungekey --create --keyfile="$MUNGE_KEY"
    else dd if=/dev/urandom of="$MUNGE_KEY" bs=1024 count=1 status=none; fi
fi
chown munge:munge "$MUNGE_KEY"; chmod 0400 "$MUNGE_KEY"   # munged refuses looser modes

pid_alive() {   # pid_alive PIDFILE NAME: that daemon runs (not a zombie: PID 1 here may reap late)
    local p
    p=$(cat "$1" 2>/dev/null) && [[ -n $p && -r /proc/$p/stat ]] || return 1
    [[ $(cat "/proc/$p/comm" 2>/dev/null) == "$2" && $(awk '{print $3}' "/proc/$p/stat") != Z ]]
}

if ! pid_alive "$MUNGE_RUN/munged.pid" munged; then
    say "starting munged"
    rm -f "$MUNGE_RUN/munge.socket.2" "$MUNGE_RUN/munge.socket.2.lock"   # stale after a kill
    runuser -u munge -- /usr/sbin/munged --pid-file="$MUNGE_RUN/munged.pid"
fi
for _ in $(seq 50); do munge -n </dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.1; done
munge -n </dev/null | unmunge >/dev/null 2>&1 || die "munged does not answer (see /var/log/munge/munged.log)"

# --- 3. slurm.conf --------------------------------------------------------------------
node=$(hostname -s)
getent hosts "$node" >/dev/null || die "host name '$node' does not resolve; add it to /etc/hosts"
# slurmd -C reports what slurmd will detect; the node line must not claim more than that or
# the node is drained as 'Low socket*core*thread count' / 'Low RealMemory'.
hw=$(slurmd -C | head -1)
cpus=$(sed -n 's/.*CPUs=\([0-9]*\).*/\1/p' <<<"$hw")
sockets=$(sed -n 's/.*SocketsPerBoard=\([0-9]*\).*/\1/p' <<<"$hw")
cores=$(sed -n 's/.*CoresPerSocket=\([0-9]*\).*/\1/p' <<<"$hw")
threads=$(sed -n 's/.*ThreadsPerCore=\([0-9]*\).*/\1/p' <<<"$hw")
mem=$(sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' <<<"$hw")
[[ -n $cpus && -n $mem ]] || die "cannot parse 'slurmd -C': $hw"
headroom=${SLURM_TEST_MEM_HEADROOM_MB:-$(( mem / 10 > 1024 ? mem / 10 : 1024 ))}
slurm_mem=$(( mem - headroom ))
(( slurm_mem >= 512 )) || die "only ${mem} MB RAM; too little left for SLURM after ${headroom} MB headroom"

install -d -m 0755 "$CONF_DIR"
install -d -o slurm -g slurm -m 0755 "$STATE_DIR" "$LOG_DIR" "$RUN_DIR"
install -d -m 0755 "$SPOOL_DIR"   # slurmd runs as root

new_conf=$(mktemp)
cat >"$new_conf" <<EOF
# Written by tests/slurm/start_cluster.sh: single-node test cluster. Do not edit by hand.
ClusterName=ferbench
SlurmctldHost=$node
SlurmUser=slurm
AuthType=auth/munge
CryptoType=crypto/munge
MpiDefault=none
# No cgroup plugins: cgroups are not reliably delegated inside containers/VMs;
# task/affinity pins each job to its CPUs with sched_setaffinity, no cgroup needed.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/affinity
# Several 1-CPU jobs share the node; memory is a consumable too (an oversized --mem is refused).
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1000
SchedulerType=sched/backfill
# No accounting database: sacct/sacctmgr do not work, squeue is the status source.
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
# Finished jobs stay visible to squeue this long; the executor plugin needs
# MinJobAge >= 3 x its first status-check delay, or it falls back to sacct. An hour: the demo
# tests read every job back with scontrol at the end, and on a loaded machine their first job
# ended more than 10 minutes before the last.
MinJobAge=3600
ReturnToService=2
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
KillWait=5
MessageTimeout=10
StateSaveLocation=$STATE_DIR
SlurmdSpoolDir=$SPOOL_DIR
SlurmctldPidFile=$RUN_DIR/slurmctld.pid
SlurmdPidFile=$RUN_DIR/slurmd.pid
SlurmctldLogFile=$LOG_DIR/slurmctld.log
SlurmdLogFile=$LOG_DIR/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
NodeName=$node CPUs=$cpus Boards=1 SocketsPerBoard=$sockets CoresPerSocket=$cores ThreadsPerCore=$threads RealMemory=$slurm_mem State=UNKNOWN
PartitionName=main Nodes=$node Default=YES MaxTime=INFINITE State=UP
EOF

conf_changed=1
if [[ -f $CONF ]] && cmp -s "$new_conf" "$CONF"; then conf_changed=0; fi
if ((conf_changed)); then
    install -m 0644 "$new_conf" "$CONF"
    say "wrote $CONF (node $node: $cpus CPUs, ${slurm_mem} MB of ${mem} MB)"
fi
rm -f "$new_conf"

# --- 4. daemons -----------------------------------------------------------------------
# Plain daemons (they fork themselves): there is no systemd to start the packaged services.
if ((conf_changed)); then
    # A cluster running with another config: restart both daemons so they agree with it.
    for d in slurmd slurmctld; do
        if pid_alive "$RUN_DIR/$d.pid" "$d"; then
            say "restarting $d for the new config"
            kill "$(cat "$RUN_DIR/$d.pid")"
            for _ in $(seq 100); do pid_alive "$RUN_DIR/$d.pid" "$d" || break; sleep 0.1; done
        fi
    done
fi
for d in slurmctld slurmd; do
    if ! pid_alive "$RUN_DIR/$d.pid" "$d"; then
        say "starting $d"
        "/usr/sbin/$d" -f "$CONF" || die "$d failed to start; see $LOG_DIR/$d.log"
    fi
done

# --- 5. wait for the node -------------------------------------------------------------
state=""
for ((i = 0; i < WAIT_S * 2; i++)); do
    state=$(sinfo -h -n "$node" -o %t 2>/dev/null | head -1 || true)
    case $state in
        idle|mix|alloc|comp) break ;;
        drain|drng|down|down\*|fail|inval)
            # e.g. left DOWN by an earlier unclean stop: ReturnToService=2 covers most cases,
            # this covers the rest.
            scontrol update NodeName="$node" State=RESUME >/dev/null 2>&1 || true ;;
    esac
    sleep 0.5
done
case $state in
    idle|mix|alloc|comp) ;;
    *) scontrol show node "$node" >&2 || true
       tail -5 "$LOG_DIR/slurmctld.log" "$LOG_DIR/slurmd.log" >&2 || true
       die "node $node not ready after ${WAIT_S}s (state '${state:-none}')" ;;
esac
sinfo
