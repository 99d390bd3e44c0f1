#!/usr/bin/env bash
# Stop the single-node SLURM started by tests/slurm/start_cluster.sh: cancel its jobs, stop
# slurmd and slurmctld, then munged. Only the daemons named in their pid files are signalled.
# Safe to run when nothing is running. Leaves packages, config and logs in place.
set -uo pipefail

RUN_DIR=/run/slurm
MUNGE_PID=/run/munge/munged.pid

say() { printf 'stop_cluster: %s\n' "$*" >&2; }
pid_alive() {   # pid_alive PIDFILE NAME: that daemon runs (not a zombie: PID 1 here may reap late)
    local p
    p=$(cat "$1" 2>/dev/null) && [[ -n $p && -r /proc/$p/stat ]] || return 1
    [[ $(cat "/proc/$p/comm" 2>/dev/null) == "$2" && $(awk '{print $3}' "/proc/$p/stat") != Z ]]
}
wait_gone() {   # wait_gone PIDFILE NAME SECONDS
    for ((i = 0; i < $3 * 10; i++)); do pid_alive "$1" "$2" || return 0; sleep 0.1; done
    return 1
}

[[ $(id -u) -eq 0 ]] || { say "must run as root"; exit 1; }

if pid_alive "$RUN_DIR/slurmctld.pid" slurmctld; then
    # This is a throwaway test cluster: every job on it belongs to the tests.
    jobs=$(squeue -h -o %i 2>/dev/null || true)
    if [[ -n $jobs ]]; then
        say "cancelling jobs: $(echo $jobs)"
        # shellcheck disable=SC2086
        scancel $jobs 2>/dev/null || true
        for _ in $(seq 100); do
            [[ -z $(squeue -h -t RUNNING,COMPLETING,PENDING -o %i 2>/dev/null) ]] && break
            sleep 0.2
        done
    fi
fi

stop() {   # stop PIDFILE NAME: SIGTERM, then SIGKILL after 20 s
    local pid
    pid_alive "$1" "$2" || { rm -f "$1"; return 0; }
    pid=$(cat "$1")
    say "stopping $2 ($pid)"
    kill -TERM "$pid" 2>/dev/null
    wait_gone "$1" "$2" 20 || { say "$2 did not stop in 20 s; killing it"; kill -KILL "$pid" 2>/dev/null; }
    rm -f "$1"
}
stop "$RUN_DIR/slurmd.pid" slurmd
stop "$RUN_DIR/slurmctld.pid" slurmctld
stop "$MUNGE_PID" munged
exit 0
