# Paper-style tables, figures, the HTML report (figures/index.html: every table, and every figure
# by relative path, on one page), the DVC metrics file and the per-fold plot data, from every run.


rule aggregate:
    input:
        metrics=train_runs("metrics"),
        predictions=train_runs("predictions"),
        embeddings=train_runs("embeddings"),
    output:
        tables=directory(results_path("tables")),
        figures=directory(results_path("figures")),
        summary=results_path("summary.json"),
        plots=results_path("plots", "per_fold.csv"),
    params:
        config=report_config,
        runs=runs_dir,
    log:
        log=results_path("logs", "aggregate.log"),
        config=results_path("logs", "aggregate.config.json"),
    benchmark:
        results_path("benchmarks", "aggregate.tsv")
    threads: res("aggregate", "threads")
    resources:
        mem_mb=res_per_attempt("aggregate", "mem_mb"),
        runtime=res_per_attempt("aggregate", "runtime"),
        gpu=res("aggregate", "gpu"),
    conda:
        "../envs/ferbench.yaml"
    shell:
        "printf '%s\\n' {params.config:q} > {log.config:q}\n"
        "ferbench aggregate --runs {params.runs:q} --config {log.config:q}"
        " --tables {output.tables:q} --figures {output.figures:q}"
        " --summary {output.summary:q} --plots {output.plots:q}"
        " --report {output.figures:q}/index.html > {log.log:q} 2>&1"
