# Rule resources. The config's `resources:` block (params.yaml) is their one source, for every
# executor: the profiles add only what belongs to a cluster (partitions, account, a GPU request
# on a GPU partition), never threads, memory or time. Included by common.smk, and by the SLURM
# tests' mini workflow (tests/slurm/mini/Snakefile) so that they submit through this very code.


def res(step, key):
    """threads / mem_mb / runtime / gpu of one step (the schema filled in the defaults)."""
    return config["resources"][step][key]


def res_per_attempt(step, key):
    """mem_mb / runtime of one step, for a rule's `resources`: the config's value on the first
    try, `attempt` times it on each retry, so a job killed for memory or time comes back with
    more. Only profiles that retry (slurm, slurm-cpu: `retries: 2`) ever see a second attempt."""
    first = res(step, key)

    def per_attempt(wildcards, attempt):
        return first * attempt

    return per_attempt
