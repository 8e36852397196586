# Stage 2 inference and evaluation of each run's seeds on the test split, and each run's figures
# over its seeds (pipeline.detection.seeds: mean, standard deviation, 95 % intervals).


rule infer:
    input:
        model="results/{dataset}/runs/{run}/seed{seed}/model.pt",
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
        events="results/{dataset}/runs/{run}/seed{seed}/events/{split}.json",
        throughput="results/{dataset}/runs/{run}/seed{seed}/events/{split}.throughput.json",
    log:
        "results/{dataset}/logs/infer/{run}-seed{seed}-{split}.log",
    benchmark:
        "results/{dataset}/benchmarks/infer/{run}-seed{seed}-{split}.tsv"
    threads: 1
    shell:
        "OMP_NUM_THREADS={threads} python -m pipeline.detection.infer --model {input.model:q} "
        "--index {input.index:q} --stats {input.stats:q} --annotations {input.annotations:q} "
        "--split {wildcards.split} --out {output.events:q} > {log} 2>&1"


rule evaluate:
    input:
        events="results/{dataset}/runs/{run}/seed{seed}/events/test.json",
        annotations=ANNOTATIONS or [],
    output:
        metrics="results/{dataset}/runs/{run}/seed{seed}/metrics.json",
        per_class_ap=report(
            "results/{dataset}/runs/{run}/seed{seed}/plots/per_class_ap.png",
            caption="report/per_class_ap.rst",
            category="Detection",
            subcategory="Per-class AP",
            labels={"run": "{run}", "seed": "{seed}"},
        ),
    params:
        tiou=" ".join(str(t) for t in config["dataset"]["tiou_thresholds"]),
        plots=lambda wildcards: (
            f"results/{wildcards.dataset}/runs/{wildcards.run}/seed{wildcards.seed}/plots"
        ),
        resamples=config["evaluation"]["bootstrap_resamples"],
        seed=config["evaluation"]["bootstrap_seed"],
    log:
        "results/{dataset}/logs/evaluate/{run}-seed{seed}.log",
    shell:
        "python -m pipeline.detection.evaluate --annotations {input.annotations:q} --split test "
        "--events {input.events:q} --tiou {params.tiou} --out {output.metrics:q} "
        "--plots {params.plots:q} --bootstrap-resamples {params.resamples} "
        "--bootstrap-seed {params.seed} > {log} 2>&1"


rule seeds:
    input:
        metrics=lambda wildcards: run_seed_files(wildcards, "metrics.json"),
        summaries=lambda wildcards: run_seed_files(wildcards, "train_summary.json"),
    output:
        metrics="results/{dataset}/runs/{run}/metrics.json",
        summary="results/{dataset}/runs/{run}/train_summary.json",
    params:
        seeds=lambda wildcards: run_seed_files(wildcards, ""),
        out_dir=lambda wildcards: f"results/{wildcards.dataset}/runs/{wildcards.run}",
    log:
        "results/{dataset}/logs/evaluate/{run}-seeds.log",
    shell:
        "python -m pipeline.detection.seeds --seeds {params.seeds:q} --out {params.out_dir:q} "
        "> {log} 2>&1"
