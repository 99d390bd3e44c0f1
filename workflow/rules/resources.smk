# Rule resources. The config's `resources:` block (params.yaml) is their one source, for every
# executor: the profiles add only what belongs to a cluster (partitions, account, a GPU request
# on a GPU partition), never threads, memory or time. Included by common.smk, and by the SLURM
# tests' mini workflow (tests/slurm/mini/Snakefile) so that they submit through this very code.


def res(step, key):
    """threads / mem_mb / runtime / gpu of one step (the schema filled in the defaults)."""
    return config["resources"][step][key]


def res_of_dataset(step, key, wildcards):
    """The dataset's own value for its pretrain/train jobs under the run's budget
    (`datasets.<name>.budgets.<budget>.resources.<step>.<key>`: two threads for a dataset
    whose one official-split job would leave a core idle), else the step's."""
    from ferbench.plan import step_resources

    return step_resources(config, step, getattr(wildcards, "dataset", None))[key]


def res_per_dataset(step, key):
    """threads of a step whose jobs have a {dataset} wildcard: the dataset's value, else the
    step's."""

    def per_dataset(wildcards):
        return res_of_dataset(step, key, wildcards)

    return per_dataset


def res_per_attempt(step, key):
    """mem_mb / runtime of one step, for a rule's `resources`: the config's value (the
    dataset's own where it has one) on the first try, `attempt` times it on each retry, so a
    job killed for memory or time comes back with more. Only profiles that retry (slurm,
    slurm-cpu: `retries: 2`) ever see a second attempt."""

    def per_attempt(wildcards, attempt):
        return res_of_dataset(step, key, wildcards) * attempt

    return per_attempt
