# Segment-level audio-visual event localisation (the AVE task) on 1-second segments: decode,
# AV-BT pre-training(s), features, the configured classifiers (Table 2 MLPs, TACMA;
# `segments.runs`) and the results table. The labels (segments.csv) come from the synthetic
# benchmark, from AVE's annotations beside its raw videos (`dataset.segment_labels`), or from
# the AVE feature import, whose released features replace AV-BT. The settings come from the
# config's `segments` block as CLI flags (common.smk).


if SEGMENTS_AVAILABLE and SEGMENT_LABELS == "videos":

    rule segments_labels:
        input:
            config["dataset"]["segment_labels"],
        output:
            segments="results/{dataset}/segments.csv",
            annotations="results/{dataset}/segments/labels.json",
        log:
            "results/{dataset}/logs/segments/labels.log",
        shell:
            "python -m pipeline.importers.ave --labels-only --annotations {input:q} "
            "--annotations-out {output.annotations:q} --segments-out {output.segments:q} "
            "> {log} 2>&1"


if SEGMENTS_AVAILABLE and SEGMENT_LABELS == "import":

    rule segments_released_features:
        input:
            index=expand(
                "results/{{dataset}}/features/{encoder_set}/index.json",
                encoder_set=ENCODER_SET,
            ),
            segments="results/{dataset}/segments.csv",
            annotations=ANNOTATIONS,
        output:
            features="results/{dataset}/segments/released/features.npz",
            summary="results/{dataset}/segments/released/features.json",
        params:
            num_classes=SEGMENT_CLASSES,
        log:
            "results/{dataset}/logs/segments/released-features.log",
        shell:
            "python -m pipeline.segments.features --index {input.index:q} "
            "--segments {input.segments:q} --annotations {input.annotations:q} "
            "--num-classes {params.num_classes} --out {output.features:q} > {log} 2>&1"


if SEGMENTS_AVAILABLE and SEGMENT_LABELS != "import":

    rule segments_clips:
        input:
            videos=list(VIDEOS.values()),
            segments="results/{dataset}/segments.csv",
            annotations=(
                "results/{dataset}/segments/labels.json"
                if SEGMENT_LABELS == "videos"
                else "results/{dataset}/annotations.json"
            ),
        output:
            "results/{dataset}/segments/clips.zarr/zarr.json",
        params:
            num_classes=SEGMENT_CLASSES,
            store=lambda wildcards: f"results/{wildcards.dataset}/segments/clips.zarr",
            settings=segment_step_settings("clips"),
        log:
            "results/{dataset}/logs/segments/clips.log",
        benchmark:
            "results/{dataset}/benchmarks/segments/clips.tsv"
        threads: 1
        shell:
            "OMP_NUM_THREADS={threads} python -m pipeline.segments.clips {input.videos:q} "
            "--segments {input.segments:q} --annotations {input.annotations:q} "
            "--num-classes {params.num_classes} --settings {params.settings:q} --out {params.store:q} "
            "--threads {threads} > {log} 2>&1"

    rule segments_pretrain:
        input:
            "results/{dataset}/segments/clips.zarr/zarr.json",
        output:
            checkpoint="results/{dataset}/segments/pretrain/{pretraining}/avbt.pt",
            summary="results/{dataset}/segments/pretrain/{pretraining}/avbt.json",
        params:
            settings=lambda wildcards: segment_step_settings(
                "pretraining", wildcards.pretraining
            ),
            store=lambda wildcards: f"results/{wildcards.dataset}/segments/clips.zarr",
        log:
            "results/{dataset}/logs/segments/pretrain-{pretraining}.log",
        benchmark:
            "results/{dataset}/benchmarks/segments/pretrain-{pretraining}.tsv"
        threads: 1
        shell:
            "OMP_NUM_THREADS={threads} python -m pipeline.segments.pretrain "
            "--clips {params.store:q} --settings {params.settings:q} --out {output.checkpoint:q} "
            "> {log} 2>&1"

    rule segments_features:
        input:
            clips="results/{dataset}/segments/clips.zarr/zarr.json",
            checkpoint="results/{dataset}/segments/pretrain/{pretraining}/avbt.pt",
        output:
            "results/{dataset}/segments/pretrain/{pretraining}/features.npz",
        params:
            store=lambda wildcards: f"results/{wildcards.dataset}/segments/clips.zarr",
        log:
            "results/{dataset}/logs/segments/features-{pretraining}.log",
        benchmark:
            "results/{dataset}/benchmarks/segments/features-{pretraining}.tsv"
        threads: 1
        shell:
            "OMP_NUM_THREADS={threads} python -m pipeline.segments.features "
            "--clips {params.store:q} --checkpoint {input.checkpoint:q} --out {output:q} "
            "> {log} 2>&1"


if SEGMENTS_AVAILABLE:

    rule segments_train:
        input:
            segment_run_features,
        output:
            model="results/{dataset}/segments/runs/{segment_run}/model.pt",
            metrics="results/{dataset}/segments/runs/{segment_run}/metrics.json",
        params:
            kind=lambda wildcards: SEGMENTS["runs"][wildcards.segment_run]["model"],
            settings=lambda wildcards: segment_step_settings(
                "run", wildcards.segment_run
            ),
            out_dir=lambda wildcards: (
                f"results/{wildcards.dataset}/segments/runs/{wildcards.segment_run}"
            ),
        log:
            "results/{dataset}/logs/segments/train-{segment_run}.log",
        benchmark:
            "results/{dataset}/benchmarks/segments/train-{segment_run}.tsv"
        threads: 1
        shell:
            "OMP_NUM_THREADS={threads} python -m pipeline.segments.train --features {input:q} "
            "--model {params.kind} --settings {params.settings:q} --out {params.out_dir:q} > {log} 2>&1"

    rule segments_table:
        input:
            metrics=expand(
                "results/{{dataset}}/segments/runs/{segment_run}/metrics.json",
                segment_run=SEGMENT_RUNS,
            ),
            pretrainings=segment_summaries,
        output:
            table=report(
                "results/{dataset}/segments/table.md",
                caption="report/segments_table.rst",
                category="Segment classification",
            ),
            metrics="results/{dataset}/segments/metrics.json",
        params:
            runs=lambda wildcards: " ".join(
                f"--run {shlex.quote(name)} {segment_source(name)} "
                f"results/{wildcards.dataset}/segments/runs/{name}/metrics.json "
                f"{segment_summary(wildcards.dataset, name)}"
                for name in SEGMENT_RUNS
            ),
            benchmark=(
                f"--published {shlex.quote(PUBLISHED_RESULTS)} --benchmark ave"
                if SEGMENT_LABELS is not None
                else ""
            ),
        log:
            "results/{dataset}/logs/segments/table.log",
        shell:
            "python -m pipeline.segments.table {params.runs} "
            "--title {wildcards.dataset} --out {output.table:q} --json {output.metrics:q} "
            "{params.benchmark} > {log} 2>&1"
