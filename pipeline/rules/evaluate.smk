# Stage 2 inference and evaluation of each run on the test split.


rule infer:
    input:
        model="results/{dataset}/runs/{run}/model.pt",
        index=expand(
            "results/{{dataset}}/features/{encoder_set}/index.json",
            encoder_set=ENCODER_SET,
        ),
        stats=expand(
            "results/{{dataset}}/features/{encoder_set}/stats.json",
            encoder_set=ENCODER_SET,
        ),
        annotations=ANNOTATIONS or [],
    output:
        events="results/{dataset}/runs/{run}/events/{split}.json",
        throughput="results/{dataset}/runs/{run}/events/{split}.throughput.json",
    log:
        "results/{dataset}/logs/infer/{run}-{split}.log",
    benchmark:
        "results/{dataset}/benchmarks/infer/{run}-{split}.tsv"
    threads: 1
    shell:
        "OMP_NUM_THREADS={threads} python -m pipeline.detection.infer --model {input.model:q} "
        "--index {input.index:q} --stats {input.stats:q} --annotations {input.annotations:q} "
        "--split {wildcards.split} --out {output.events:q} > {log} 2>&1"


rule evaluate:
    input:
        events="results/{dataset}/runs/{run}/events/test.json",
        annotations=ANNOTATIONS or [],
    output:
        metrics="results/{dataset}/runs/{run}/metrics.json",
        per_class_ap=report(
            "results/{dataset}/runs/{run}/plots/per_class_ap.png",
            caption="report/per_class_ap.rst",
            category="Detection",
            subcategory="Per-class AP",
            labels={"run": "{run}"},
        ),
    params:
        tiou=" ".join(str(t) for t in config["dataset"]["tiou_thresholds"]),
        plots=lambda wildcards: f"results/{wildcards.dataset}/runs/{wildcards.run}/plots",
        resamples=config["evaluation"]["bootstrap_resamples"],
        seed=config["evaluation"]["bootstrap_seed"],
    log:
        "results/{dataset}/logs/evaluate/{run}.log",
    shell:
        "python -m pipeline.detection.evaluate --annotations {input.annotations:q} --split test "
        "--events {input.events:q} --tiou {params.tiou} --out {output.metrics:q} "
        "--plots {params.plots:q} --bootstrap-resamples {params.resamples} "
        "--bootstrap-seed {params.seed} > {log} 2>&1"
