# Data: synthetic faces (only when a dataset root lies inside synthetic.out) -> aligned faces
# decoded once per dataset -> folds.


rule synthesize:
    output:
        synthetic_outputs(),
    params:
        out=synthetic_out,
        layouts=",".join(SYNTHETIC["layouts"]),
        subjects=SYNTHETIC["subjects"],
        frames=SYNTHETIC["frames"],
        size=SYNTHETIC["size"],
        seed=SYNTHETIC["seed"],
    log:
        results_path("logs", "synthesize.log"),
    benchmark:
        results_path("benchmarks", "synthesize.tsv")
    threads: res("synthesize", "threads")
    resources:
        mem_mb=res_per_attempt("synthesize", "mem_mb"),
        runtime=res_per_attempt("synthesize", "runtime"),
        gpu=res("synthesize", "gpu"),
    conda:
        "../envs/ferbench.yaml"
    shell:
        "ferbench synthesize --out {params.out:q} --layouts {params.layouts:q}"
        " --subjects {params.subjects} --frames {params.frames} --size {params.size}"
        " --seed {params.seed} > {log:q} 2>&1"


rule prepare:
    input:
        root=dataset_root_input,
    output:
        faces=faces_outputs(),
        samples=cache_path("{dataset}", "samples.parquet"),
        # cache format 2: a cache prepared before landmarks.npy is remade
        landmarks=cache_path("{dataset}", "landmarks.npy"),
        report=cache_path("{dataset}", "report.json"),
    params:
        root=dataset_root,
        sizes=sizes_arg,
        split_check=split_check_arg,
    log:
        results_path("logs", "prepare", "{dataset}.log"),
    benchmark:
        results_path("benchmarks", "prepare", "{dataset}.tsv")
    threads: res("prepare", "threads")
    resources:
        mem_mb=res_per_attempt("prepare", "mem_mb"),
        runtime=res_per_attempt("prepare", "runtime"),
        gpu=res("prepare", "gpu"),
    conda:
        "../envs/ferbench.yaml"
    shell:
        "ferbench prepare {wildcards.dataset:q} {params.root:q}"
        ' --out "$(dirname {output.samples:q})" --size {params.sizes}'
        " --split-check {params.split_check} --threads {threads} > {log:q} 2>&1"


rule folds:
    input:
        unpack(fold_file_input),
        samples=cache_path("{dataset}", "samples.parquet"),
    output:
        # folds.parquet: the dataset protocol's task; folds_<task>.parquet: the other task of a
        # dataset labelled for both (AffectNet), for runs that train for it (config.job_task)
        parquet=cache_path("{dataset}", "folds{task_suffix}.parquet"),
        meta=cache_path("{dataset}", "folds{task_suffix}.json"),
    params:
        protocol=protocol_json,
        fold_file=fold_file_arg,
    log:
        results_path("logs", "folds", "{dataset}{task_suffix}.log"),
    benchmark:
        results_path("benchmarks", "folds", "{dataset}{task_suffix}.tsv")
    threads: res("folds", "threads")
    resources:
        mem_mb=res_per_attempt("folds", "mem_mb"),
        runtime=res_per_attempt("folds", "runtime"),
        gpu=res("folds", "gpu"),
    conda:
        "../envs/ferbench.yaml"
    shell:
        "ferbench folds {wildcards.dataset:q} --cache \"$(dirname {input.samples:q})\""
        " --out {output.parquet:q} --protocol {params.protocol:q} {params.fold_file}"
        " > {log:q} 2>&1"
