# Stage 2 training: one resumable job per configured run and training seed (checkpoints survive
# a killed job); training.seeds lists the seeds.


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
        model="results/{dataset}/runs/{run}/seed{seed}/model.pt",
        log_csv="results/{dataset}/runs/{run}/seed{seed}/train_log.csv",
        summary="results/{dataset}/runs/{run}/seed{seed}/train_summary.json",
    params:
        settings=run_settings,
        out_dir=lambda wildcards: (
            f"results/{wildcards.dataset}/runs/{wildcards.run}/seed{wildcards.seed}"
        ),
    log:
        "results/{dataset}/logs/train/{run}-seed{seed}.log",
    benchmark:
        "results/{dataset}/benchmarks/train/{run}-seed{seed}.tsv"
    threads: 1
    shell:
        "OMP_NUM_THREADS={threads} python -m pipeline.detection.train --settings {params.settings:q} "
        "--index {input.index:q} --stats {input.stats:q} --annotations {input.annotations:q} "
        "--out {params.out_dir:q} > {log} 2>&1"
