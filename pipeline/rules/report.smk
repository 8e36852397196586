# The data set's report: every run's mAP table side by side, plots and throughput.


rule report:
    input:
        metrics=expand("results/{{dataset}}/runs/{run}/metrics.json", run=RUNS),
        summaries=expand("results/{{dataset}}/runs/{run}/train_summary.json", run=RUNS),
        index=expand(
            "results/{{dataset}}/features/{encoder_set}/index.json",
            encoder_set=ENCODER_SET,
        ),
    output:
        report(
            "results/{dataset}/report.md",
            caption="report/detection_report.rst",
            category="Detection",
            labels={"table": "runs"},
        ),
    params:
        runs=expand("results/{{dataset}}/runs/{run}", run=RUNS),
    log:
        "results/{dataset}/logs/report.log",
    shell:
        "python -m pipeline.detection.report --title {wildcards.dataset} --runs {params.runs:q} "
        "--index {input.index:q} --out {output:q} > {log} 2>&1"


rule table:
    input:
        metrics=expand("results/{{dataset}}/runs/{run}/metrics.json", run=RUNS),
        published=PUBLISHED_RESULTS,
    output:
        report(
            "results/{dataset}/table.md",
            caption="report/detection_table.rst",
            category="Detection",
            labels={"table": "benchmark"},
        ),
    params:
        runs=expand("results/{{dataset}}/runs/{run}", run=RUNS),
        benchmark=config["dataset"]["benchmark"] or DATASET,
    log:
        "results/{dataset}/logs/table.log",
    shell:
        "python -m pipeline.detection.table --benchmark {params.benchmark} --runs {params.runs:q} "
        "--published {input.published:q} --out {output:q} > {log} 2>&1"
