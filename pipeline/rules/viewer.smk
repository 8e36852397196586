# The results viewer: one self-contained HTML page per data set (pipeline.viewer), with the test
# videos and the spatial heatmap figures hard-linked (or copied) beside it. It plays a test
# video with the ground truth and each run's detections as lanes per class under it, and shows
# the segment stage's per-second predictions where that stage ran. About 2 s on the demo.


rule viewer:
    input:
        annotations=ANNOTATIONS or [],
        # each run's first seed's detections (its metrics.json names the seeds)
        events=[
            f"results/{{dataset}}/runs/{run}/seed{seeds[0]}/events/test.json"
            for run, seeds in RUN_SEEDS.items()
        ],
        metrics=expand("results/{{dataset}}/runs/{run}/metrics.json", run=RUNS),
        # every video (the test split is known only from the annotations): synthetic ones as
        # inputs, a user's through their stamp in params (common.smk)
        videos=video_inputs(VIDEOS.values()),
        segments="results/{dataset}/segments.csv" if SEGMENTS_AVAILABLE else [],
        segment_metrics=expand(
            "results/{{dataset}}/segments/runs/{segment_run}/metrics.json",
            segment_run=SEGMENT_RUNS if SEGMENTS_AVAILABLE else [],
        ),
        heatmaps=expand(
            "results/{{dataset}}/spatial/{spatial_run}/seed{seed}/heatmaps.png",
            spatial_run=SPATIAL_RUNS if SPATIAL_AVAILABLE else [],
            seed=SPATIAL_SEEDS,
        ),
    output:
        "results/{dataset}/viewer/index.html",
    params:
        # where the videos are (pipeline.sources.list_videos)
        dataset=json.dumps(
            {
                key: config["dataset"][key]
                for key in (
                    "name",
                    "source",
                    "synth",
                    "videos_dir",
                    "video_extensions",
                )
            },
            sort_keys=True,
        ),
        runs=expand("results/{{dataset}}/runs/{run}", run=RUNS),
        videos_stamp=all_videos_stamp,
        segments=lambda wildcards, input: (
            shlex.join(
                [
                    "--segments",
                    input.segments,
                    "--segment-runs",
                    *(str(Path(path).parent) for path in input.segment_metrics),
                ]
            )
            if SEGMENTS_AVAILABLE
            else ""
        ),
    log:
        "results/{dataset}/logs/viewer.log",
    benchmark:
        "results/{dataset}/benchmarks/viewer.tsv"
    shell:
        "python -m pipeline.viewer.build --title {wildcards.dataset} "
        "--annotations {input.annotations:q} --dataset {params.dataset:q} "
        "--runs {params.runs:q} {params.segments} --heatmaps {input.heatmaps:q} "
        "--out {output:q} > {log} 2>&1"
