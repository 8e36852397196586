# The per-task method comparison (who wins what): detection runs, and the segment and spatial
# tables when those stages run on this data set. Part of the default target.


rule comparison:
    input:
        metrics=expand("results/{{dataset}}/runs/{run}/metrics.json", run=RUNS),
        summaries=expand("results/{{dataset}}/runs/{run}/train_summary.json", run=RUNS),
        segments=SEGMENT_METRICS or [],
        spatial=SPATIAL_METRICS or [],
    output:
        report="results/{dataset}/comparison.md",
        numbers="results/{dataset}/comparison.json",
    params:
        runs=expand("results/{{dataset}}/runs/{run}", run=RUNS),
        segments=f"--segments {SEGMENT_METRICS}" if SEGMENT_METRICS else "",
        spatial=f"--spatial {SPATIAL_METRICS}" if SPATIAL_METRICS else "",
    log:
        "results/{dataset}/logs/comparison.log",
    shell:
        "python -m pipeline.comparison --title {wildcards.dataset} --runs {params.runs:q} "
        "{params.segments} {params.spatial} --out {output.report:q} --json {output.numbers:q} "
        "> {log} 2>&1"


if ANNOTATIONS is not None:
    FINAL_TARGETS.append(f"results/{DATASET}/comparison.md")
