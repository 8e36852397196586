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
        packed=packed_features_input,
    output:
        model="results/{dataset}/runs/{run}/seed{seed}/model.pt",
        log_csv="results/{dataset}/runs/{run}/seed{seed}/train_log.csv",
        summary="results/{dataset}/runs/{run}/seed{seed}/train_summary.json",
    params:
        settings=run_settings,
        out_dir=lambda wildcards: (
            f"results/{wildcards.dataset}/runs/{wildcards.run}/seed{wildcards.seed}"
        ),
        packed=lambda wildcards, input: (
            f"--packed {shlex.quote(str(Path(input.packed).parent))}"
            if input.packed
            else ""
        ),
    log:
        "results/{dataset}/logs/train/{run}-seed{seed}.log",
    benchmark:
        "results/{dataset}/benchmarks/train/{run}-seed{seed}.tsv"
    threads: 1
    shell:
        "OMP_NUM_THREADS={threads} python -m pipeline.detection.train --settings {params.settings:q} "
        "--index {input.index:q} --stats {input.stats:q} --annotations {input.annotations:q} "
        "--out {params.out_dir:q} {params.packed} > {log} 2>&1"


# The packed copy of the stores that runs with training.packed_features read (pipeline.packed):
# derived from the stores, rebuilt whenever the index changes.
rule pack_features:
    input:
        index="results/{dataset}/features/{encoder_set}/index.json",
    output:
        expand(
            "results/{{dataset}}/features/{{encoder_set}}/packed/{name}",
            name=[
                "visual.npy",
                "audio.npy",
                "centres.npy",
                "offsets.npy",
                "manifest.json",
            ],
        ),
    params:
        out_dir="results/{dataset}/features/{encoder_set}/packed",
    log:
        "results/{dataset}/logs/pack_features/{encoder_set}.log",
    threads: 1
    shell:
        "AVLOC_PROGRESS_FD=3 python -m pipeline.packed --index {input.index:q} "
        "--out {params.out_dir:q} 3>&2 > {log} 2>&1"
