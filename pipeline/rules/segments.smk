# Segment-level audio-visual event localisation (the AVE task) on the synthetic benchmark's
# 1-second segments: decode, AV-BT pre-training(s), features, the configured classifiers
# (TACMA, one-modality; `segments.runs`) and the results table. Needs segments.csv, which only
# the synthetic source writes (`segments.enabled`). The settings come from the config's
# `segments` block as CLI flags (common.smk).


if SEGMENTS_AVAILABLE:

    rule segments_clips:
        input:
            videos=list(VIDEOS.values()),
            segments="results/{dataset}/segments.csv",
            annotations="results/{dataset}/annotations.json",
        output:
            "results/{dataset}/segments/clips.npz",
        params:
            num_classes=config["dataset"]["synth"]["num_classes"],
            flags=segment_flags("clips"),
        log:
            "results/{dataset}/logs/segments/clips.log",
        benchmark:
            "results/{dataset}/benchmarks/segments/clips.tsv"
        threads: 1
        shell:
            "OMP_NUM_THREADS={threads} python -m pipeline.segments.clips {input.videos:q} "
            "--segments {input.segments:q} --annotations {input.annotations:q} "
            "--num-classes {params.num_classes} {params.flags} --out {output:q} > {log} 2>&1"

    rule segments_pretrain:
        input:
            "results/{dataset}/segments/clips.npz",
        output:
            checkpoint="results/{dataset}/segments/pretrain/{pretraining}/avbt.pt",
            summary="results/{dataset}/segments/pretrain/{pretraining}/avbt.json",
        params:
            flags=lambda wildcards: segment_flags("pretraining", wildcards.pretraining),
        log:
            "results/{dataset}/logs/segments/pretrain-{pretraining}.log",
        benchmark:
            "results/{dataset}/benchmarks/segments/pretrain-{pretraining}.tsv"
        threads: 1
        shell:
            "OMP_NUM_THREADS={threads} python -m pipeline.segments.pretrain --clips {input:q} "
            "{params.flags} --out {output.checkpoint:q} > {log} 2>&1"

    rule segments_features:
        input:
            clips="results/{dataset}/segments/clips.npz",
            checkpoint="results/{dataset}/segments/pretrain/{pretraining}/avbt.pt",
        output:
            "results/{dataset}/segments/pretrain/{pretraining}/features.npz",
        log:
            "results/{dataset}/logs/segments/features-{pretraining}.log",
        benchmark:
            "results/{dataset}/benchmarks/segments/features-{pretraining}.tsv"
        threads: 1
        shell:
            "OMP_NUM_THREADS={threads} python -m pipeline.segments.features --clips {input.clips:q} "
            "--checkpoint {input.checkpoint:q} --out {output:q} > {log} 2>&1"

    rule segments_train:
        input:
            segment_run_features,
        output:
            model="results/{dataset}/segments/runs/{segment_run}/model.pt",
            metrics="results/{dataset}/segments/runs/{segment_run}/metrics.json",
        params:
            kind=lambda wildcards: SEGMENTS["runs"][wildcards.segment_run]["model"],
            flags=lambda wildcards: segment_flags("run", wildcards.segment_run),
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
            "--model {params.kind} {params.flags} --out {params.out_dir:q} > {log} 2>&1"

    rule segments_table:
        input:
            metrics=expand(
                "results/{{dataset}}/segments/runs/{segment_run}/metrics.json",
                segment_run=SEGMENT_RUNS,
            ),
            pretrainings=expand(
                "results/{{dataset}}/segments/pretrain/{pretraining}/avbt.json",
                pretraining=SEGMENT_PRETRAININGS,
            ),
        output:
            table="results/{dataset}/segments/table.md",
            metrics="results/{dataset}/segments/metrics.json",
        params:
            runs=lambda wildcards: " ".join(
                f"--run {shlex.quote(name)} {run['pretraining']} "
                f"results/{wildcards.dataset}/segments/runs/{name}/metrics.json "
                f"results/{wildcards.dataset}/segments/pretrain/{run['pretraining']}/avbt.json"
                for name, run in SEGMENTS["runs"].items()
            ),
        log:
            "results/{dataset}/logs/segments/table.log",
        shell:
            "python -m pipeline.segments.table {params.runs} "
            "--title {wildcards.dataset} --out {output.table:q} --json {output.metrics:q} "
            "> {log} 2>&1"
