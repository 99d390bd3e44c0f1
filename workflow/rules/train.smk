# One training job per dataset x method x fold x seed; methods with a pretraining stage add a
# pretrain job whose encoder.pt feeds their train jobs (per fold when its data depend on the
# fold, else one on every subject of its dataset, stored as foldall). A job's slice of the config is both its --config
# file (written beside its log) and a param: a changed value reruns exactly the jobs reading it.


rule pretrain:
    input:
        unpack(pretrain_inputs),
    output:
        encoder=results_path(
            "pretrain", "{dataset}", "{method}", "fold{fold}", "seed{seed}", "encoder.pt"
        ),
    params:
        config=pretrain_config,
        fold=pretrain_fold_arg,
    log:
        log=results_path("logs", "pretrain", "{dataset}", "{method}", "fold{fold}", "seed{seed}.log"),
        config=results_path(
            "logs", "pretrain", "{dataset}", "{method}", "fold{fold}", "seed{seed}.config.json"
        ),
    benchmark:
        results_path("benchmarks", "pretrain", "{dataset}", "{method}", "fold{fold}", "seed{seed}.tsv")
    threads: res_per_dataset("pretrain", "threads")
    resources:
        mem_mb=res_per_attempt("pretrain", "mem_mb"),
        runtime=res_per_attempt("pretrain", "runtime"),
        gpu=res("pretrain", "gpu"),
    conda:
        "../envs/ferbench.yaml"
    shell:
        "printf '%s\\n' {params.config:q} > {log.config:q}\n"
        'echo "CUDA_VISIBLE_DEVICES=${{CUDA_VISIBLE_DEVICES:-}}" > {log.log:q}\n'
        "ferbench pretrain --config {log.config:q} --dataset {wildcards.dataset:q}"
        " --method {wildcards.method:q} {params.fold} --seed {wildcards.seed}"
        ' --cache "$(dirname {input.samples:q})" --folds {input.folds:q}'
        ' --out "$(dirname {output.encoder:q})" --threads {threads} --no-progress'
        " >> {log.log:q} 2>&1"


rule train:
    input:
        unpack(train_inputs),
    output:
        metrics=results_path("runs", "{dataset}", "{method}", "fold{fold}", "seed{seed}", "metrics.json"),
        predictions=results_path(
            "runs", "{dataset}", "{method}", "fold{fold}", "seed{seed}", "predictions.parquet"
        ),
        embeddings=results_path(
            "runs", "{dataset}", "{method}", "fold{fold}", "seed{seed}", "embeddings.parquet"
        ),
        model=results_path("runs", "{dataset}", "{method}", "fold{fold}", "seed{seed}", "model.pt"),
        log=results_path("runs", "{dataset}", "{method}", "fold{fold}", "seed{seed}", "train_log.csv"),
    params:
        config=job_config,
        pretrained=pretrained_arg,
    log:
        log=results_path("logs", "train", "{dataset}", "{method}", "fold{fold}", "seed{seed}.log"),
        config=results_path(
            "logs", "train", "{dataset}", "{method}", "fold{fold}", "seed{seed}.config.json"
        ),
    benchmark:
        results_path("benchmarks", "train", "{dataset}", "{method}", "fold{fold}", "seed{seed}.tsv")
    threads: res_per_dataset("train", "threads")
    resources:
        mem_mb=res_per_attempt("train", "mem_mb"),
        runtime=res_per_attempt("train", "runtime"),
        gpu=res("train", "gpu"),
    conda:
        "../envs/ferbench.yaml"
    shell:
        "printf '%s\\n' {params.config:q} > {log.config:q}\n"
        'echo "CUDA_VISIBLE_DEVICES=${{CUDA_VISIBLE_DEVICES:-}}" > {log.log:q}\n'
        "ferbench train --config {log.config:q} --dataset {wildcards.dataset:q}"
        " --method {wildcards.method:q} --fold {wildcards.fold} --seed {wildcards.seed}"
        ' --cache "$(dirname {input.samples:q})" --folds {input.folds:q}'
        ' --out "$(dirname {output.metrics:q})" --threads {threads} --no-progress'
        " {params.pretrained} >> {log.log:q} 2>&1"
