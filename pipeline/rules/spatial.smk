# Visual sound-source localisation: the configured localisers (`spatial.runs`: M2VSL and a
# similarity-map baseline by default) trained weakly (no box is used for training) once per
# seed, scored on the test split, averaged in a table. The data: the stores' visual grids
# (`extraction.visual_grid: true`) with a synthetic data set's boxes.json, or, for a
# sound-source localisation benchmark (dataset.import.format flickr_soundnet, vggss, ...), the
# spatial set built from its release.


if SPATIAL_BENCHMARK:

    rule spatial_set:
        input:
            release=spatial_set_release_files(),
        output:
            splits=expand(
                "results/{{dataset}}/spatial_set/{split}.npz", split=SPATIAL_SET_SPLITS
            ),
            report="results/{dataset}/spatial_set/report.json",
        params:
            settings=json.dumps(spatial_set_settings(config), sort_keys=True),
            out_dir=lambda wildcards: f"results/{wildcards.dataset}/spatial_set",
        log:
            "results/{dataset}/logs/spatial/set.log",
        benchmark:
            "results/{dataset}/benchmarks/spatial/set.tsv"
        threads: 1
        shell:
            "OMP_NUM_THREADS={threads} python -m pipeline.spatial.sets "
            "--settings {params.settings:q} --out {params.out_dir:q} > {log} 2>&1"


rule spatial_train:
    input:
        unpack(spatial_data),
    output:
        model="results/{dataset}/spatial/{spatial_run}/seed{seed}/model.pt",
        summary="results/{dataset}/spatial/{spatial_run}/seed{seed}/train_summary.json",
        epochs="results/{dataset}/spatial/{spatial_run}/seed{seed}/train_log.json",
    params:
        data=spatial_data_arguments,
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
        "OMP_NUM_THREADS={threads} python -m pipeline.spatial.train {params.data} "
        "--settings {params.settings:q} --name {wildcards.spatial_run} --seed {wildcards.seed} "
        "--out {params.out_dir:q} > {log} 2>&1"


rule spatial_evaluate:
    input:
        unpack(spatial_data),
        model="results/{dataset}/spatial/{spatial_run}/seed{seed}/model.pt",
    output:
        metrics="results/{dataset}/spatial/{spatial_run}/seed{seed}/metrics.json",
        heatmaps=report(
            "results/{dataset}/spatial/{spatial_run}/seed{seed}/heatmaps.png",
            caption="report/heatmaps.rst",
            category="Sound-source localisation",
            subcategory="Heatmaps",
            labels={"run": "{spatial_run}", "seed": "{seed}"},
        ),
    params:
        data=spatial_data_arguments,
    log:
        "results/{dataset}/logs/spatial/evaluate-{spatial_run}-seed{seed}.log",
    benchmark:
        "results/{dataset}/benchmarks/spatial/evaluate-{spatial_run}-seed{seed}.tsv"
    threads: 1
    shell:
        "OMP_NUM_THREADS={threads} python -m pipeline.spatial.evaluate --model {input.model:q} "
        "{params.data} --split test --out {output.metrics:q} --heatmaps {output.heatmaps:q} "
        "> {log} 2>&1"


# A sound-source localisation benchmark's published numbers go under our runs (the key of its
# import format in pipeline.published.LOCALISATION_BENCHMARKS); the synthetic data has none.
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
        published=PUBLISHED_RESULTS if SPATIAL_BENCHMARK else [],
    output:
        table=report(
            "results/{dataset}/spatial/table.md",
            caption="report/spatial_table.rst",
            category="Sound-source localisation",
        ),
        metrics="results/{dataset}/spatial/metrics.json",
    params:
        runs=expand(
            "results/{{dataset}}/spatial/{spatial_run}/seed{seed}",
            spatial_run=SPATIAL_RUNS,
            seed=SPATIAL_SEEDS,
        ),
        published=(
            shlex.join(
                [
                    "--published",
                    localisation_key(SPATIAL_BENCHMARK),
                    "--published-results",
                    PUBLISHED_RESULTS,
                ]
            )
            if SPATIAL_BENCHMARK
            else ""
        ),
    log:
        "results/{dataset}/logs/spatial/table.log",
    shell:
        "python -m pipeline.spatial.table --runs {params.runs:q} --out {output.table:q} "
        "--json {output.metrics:q} --title {wildcards.dataset} {params.published} > {log} 2>&1"
