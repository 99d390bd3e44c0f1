# The workflow lives in workflow/ (rules, schema, profiles); this file makes `snakemake` from the
# repository root run it.
include: "workflow/Snakefile"


# Snakemake never takes the default target from an included file (snakemake/snakemake#2773),
# so a plain `snakemake` is pointed at rule all from here.
rule default:
    default_target: True
    input:
        rules.all.input,
