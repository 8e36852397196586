# The per-task method comparison (who wins what): detection runs, and the segment and spatial
# tables when those stages run on this data set. Part of the default target.


rule comparison:
    input:
        metrics=expand("results/{{dataset}}/runs/{run}/metrics.json", run=RUNS),
        summaries=expand("results/{{dataset}}/runs/{run}/train_summary.json", run=RUNS),
        segments="results/{dataset}/segments/metrics.json" if SEGMENTS_AVAILABLE else [],
        spatial="results/{dataset}/spatial/metrics.json" if SPATIAL_AVAILABLE else [],
    output:
        report=report(
            "results/{dataset}/comparison.md",
            caption="report/comparison.rst",
            category="Comparison",
        ),
        numbers="results/{dataset}/comparison.json",
    params:
        runs=expand("results/{{dataset}}/runs/{run}", run=RUNS),
        segments=lambda wildcards, input: (
            f"--segments {shlex.quote(input.segments)}" if SEGMENTS_AVAILABLE else ""
        ),
        spatial=lambda wildcards, input: (
            f"--spatial {shlex.quote(input.spatial)}" if SPATIAL_AVAILABLE else ""
        ),
    log:
        "results/{dataset}/logs/comparison.log",
    shell:
        "python -m pipeline.comparison --title {wildcards.dataset} --runs {params.runs:q} "
        "{params.segments} {params.spatial} --out {output.report:q} --json {output.numbers:q} "
        "> {log} 2>&1"
