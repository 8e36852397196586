# Stage 2 training: one resumable job per configured run (checkpoints survive a killed job).


rule train:
    input:
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
        model="results/{dataset}/runs/{run}/model.pt",
        log_csv="results/{dataset}/runs/{run}/train_log.csv",
        summary="results/{dataset}/runs/{run}/train_summary.json",
    params:
        settings=run_settings,
        out_dir=lambda wildcards: f"results/{wildcards.dataset}/runs/{wildcards.run}",
    log:
        "results/{dataset}/logs/train/{run}.log",
    benchmark:
        "results/{dataset}/benchmarks/train/{run}.tsv"
    threads: 1
    shell:
        "OMP_NUM_THREADS={threads} python -m pipeline.detection.train --settings {params.settings:q} "
        "--index {input.index:q} --stats {input.stats:q} --annotations {input.annotations:q} "
        "--out {params.out_dir:q} > {log} 2>&1"
