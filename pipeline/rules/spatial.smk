# Visual sound-source localisation: the configured localisers (`spatial.runs`: M2VSL and a
# similarity-map baseline by default) trained on the stores' visual grids (weakly: no box is
# used for training) once per seed, scored with boxes.json on the test split, averaged in a
# table. Needs stores extracted with `extraction.visual_grid: true` and a synthetic data set
# (boxes).
rule spatial_train:
    input:
        index=expand(
            "results/{{dataset}}/features/{encoder_set}/index.json",
            encoder_set=ENCODER_SET,
        ),
        boxes="results/{dataset}/boxes.json",
        annotations=ANNOTATIONS or [],
    output:
        model="results/{dataset}/spatial/{spatial_run}/seed{seed}/model.pt",
        summary="results/{dataset}/spatial/{spatial_run}/seed{seed}/train_summary.json",
        epochs="results/{dataset}/spatial/{spatial_run}/seed{seed}/train_log.json",
    params:
        settings=spatial_run_settings,
        out_dir=lambda wildcards: (
            f"results/{wildcards.dataset}/spatial/{wildcards.spatial_run}/seed{wildcards.seed}"
        ),
    log:
        "results/{dataset}/logs/spatial/train-{spatial_run}-seed{seed}.log",
    benchmark:
        "results/{dataset}/benchmarks/spatial/train-{spatial_run}-seed{seed}.tsv"
    threads: 1
    shell:
        "OMP_NUM_THREADS={threads} python -m pipeline.spatial.train --index {input.index:q} "
        "--boxes {input.boxes:q} --annotations {input.annotations:q} --settings {params.settings:q} "
        "--name {wildcards.spatial_run} --seed {wildcards.seed} --out {params.out_dir:q} "
        "> {log} 2>&1"


rule spatial_evaluate:
    input:
        model="results/{dataset}/spatial/{spatial_run}/seed{seed}/model.pt",
        index=expand(
            "results/{{dataset}}/features/{encoder_set}/index.json",
            encoder_set=ENCODER_SET,
        ),
        boxes="results/{dataset}/boxes.json",
        annotations=ANNOTATIONS or [],
    output:
        metrics="results/{dataset}/spatial/{spatial_run}/seed{seed}/metrics.json",
        heatmaps="results/{dataset}/spatial/{spatial_run}/seed{seed}/heatmaps.png",
    log:
        "results/{dataset}/logs/spatial/evaluate-{spatial_run}-seed{seed}.log",
    benchmark:
        "results/{dataset}/benchmarks/spatial/evaluate-{spatial_run}-seed{seed}.tsv"
    threads: 1
    shell:
        "OMP_NUM_THREADS={threads} python -m pipeline.spatial.evaluate --model {input.model:q} "
        "--index {input.index:q} --boxes {input.boxes:q} --annotations {input.annotations:q} "
        "--split test --out {output.metrics:q} --heatmaps {output.heatmaps:q} > {log} 2>&1"


rule spatial_table:
    input:
        metrics=expand(
            "results/{{dataset}}/spatial/{spatial_run}/seed{seed}/metrics.json",
            spatial_run=SPATIAL_RUNS,
            seed=SPATIAL_SEEDS,
        ),
        summaries=expand(
            "results/{{dataset}}/spatial/{spatial_run}/seed{seed}/train_summary.json",
            spatial_run=SPATIAL_RUNS,
            seed=SPATIAL_SEEDS,
        ),
    output:
        table="results/{dataset}/spatial/table.md",
        metrics="results/{dataset}/spatial/metrics.json",
    params:
        runs=expand(
            "results/{{dataset}}/spatial/{spatial_run}/seed{seed}",
            spatial_run=SPATIAL_RUNS,
            seed=SPATIAL_SEEDS,
        ),
    log:
        "results/{dataset}/logs/spatial/table.log",
    shell:
        "python -m pipeline.spatial.table --runs {params.runs:q} --out {output.table:q} "
        "--json {output.metrics:q} --title {wildcards.dataset} > {log} 2>&1"
