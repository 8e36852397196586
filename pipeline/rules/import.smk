# Stage 1 alternative: a benchmark's released features imported into the per-video store layout.
# The importers' progress lines go to their logs and to the terminal (file descriptor 3,
# pipeline.progress).

# Challenge entries `rule all` asks for (the Perception Test import sets them).
SUBMISSIONS = []


if config["dataset"]["source"] == "import":
    IMPORT = config["dataset"]["import"]

    if IMPORT["format"] == "unav100":

        rule import_unav100:
            input:
                annotations=IMPORT["annotations"],
                features=IMPORT["features_dir"],
            output:
                index=expand(
                    "results/{{dataset}}/features/{encoder_set}/index.json",
                    encoder_set=ENCODER_SET,
                ),
                stats=expand(
                    "results/{{dataset}}/features/{encoder_set}/stats.json",
                    encoder_set=ENCODER_SET,
                ),
                manifest=expand(
                    "results/{{dataset}}/features/{encoder_set}/shards/import.json",
                    encoder_set=ENCODER_SET,
                ),
            params:
                out_dir=lambda wildcards: f"results/{wildcards.dataset}/features/{ENCODER_SET}",
                release=IMPORT["release"],
                missing=IMPORT["missing"],
            log:
                "results/{dataset}/logs/import.log",
            benchmark:
                "results/{dataset}/benchmarks/import.tsv"
            shell:
                "AVLOC_PROGRESS_FD=3 python -m pipeline.importers.unav100 --annotations {input.annotations:q} "
                "--features-dir {input.features:q} --out {params.out_dir:q} "
                "--release {params.release} --missing {params.missing} --dataset {wildcards.dataset} --encoder-set {ENCODER_SET} "
                "3>&2 > {log} 2>&1"

    if IMPORT["format"] == "ave":

        rule import_ave:
            input:
                dataset_dir=IMPORT["annotations"],
                features=IMPORT["features_dir"],
            output:
                index=expand(
                    "results/{{dataset}}/features/{encoder_set}/index.json",
                    encoder_set=ENCODER_SET,
                ),
                stats=expand(
                    "results/{{dataset}}/features/{encoder_set}/stats.json",
                    encoder_set=ENCODER_SET,
                ),
                manifest=expand(
                    "results/{{dataset}}/features/{encoder_set}/shards/import.json",
                    encoder_set=ENCODER_SET,
                ),
                annotations="results/{dataset}/annotations.json",
                segments="results/{dataset}/segments.csv",
            params:
                out_dir=lambda wildcards: f"results/{wildcards.dataset}/features/{ENCODER_SET}",
            log:
                "results/{dataset}/logs/import.log",
            benchmark:
                "results/{dataset}/benchmarks/import.tsv"
            shell:
                "AVLOC_PROGRESS_FD=3 python -m pipeline.importers.ave --annotations {input.dataset_dir:q} "
                "--features-dir {input.features:q} --out {params.out_dir:q} "
                "--annotations-out {output.annotations:q} --segments-out {output.segments:q} "
                "--dataset {wildcards.dataset} --encoder-set {ENCODER_SET} 3>&2 > {log} 2>&1"

    if IMPORT["format"] == "actionformer":

        rule import_actionformer:
            input:
                annotations=IMPORT["annotations"],
                features=IMPORT["features_dir"],
                # the benchmark's videos: audio extracted on the released grid (none: no audio)
                videos=[IMPORT["videos_dir"]] if IMPORT["videos_dir"] else [],
            output:
                index=expand(
                    "results/{{dataset}}/features/{encoder_set}/index.json",
                    encoder_set=ENCODER_SET,
                ),
                stats=expand(
                    "results/{{dataset}}/features/{encoder_set}/stats.json",
                    encoder_set=ENCODER_SET,
                ),
                manifest=expand(
                    "results/{{dataset}}/features/{encoder_set}/shards/import.json",
                    encoder_set=ENCODER_SET,
                ),
                annotations="results/{dataset}/annotations.json",
            params:
                out_dir=lambda wildcards: f"results/{wildcards.dataset}/features/{ENCODER_SET}",
                release=IMPORT["release"],
                missing=IMPORT["missing"],
                validation_fraction=IMPORT["validation_fraction"],
                encoder_set=ENCODER_SET,
                audio=lambda wildcards, input: (
                    shlex.join(
                        [
                            "--videos-dir",
                            input.videos[0],
                            "--audio-encoder",
                            json.dumps(config["extraction"]["audio"], sort_keys=True),
                            "--on-error",
                            config["extraction"]["on_error"],
                            "--batch-size",
                            str(config["extraction"]["batch_size"]),
                            "--device",
                            config["extraction"]["device"],
                            *(
                                ["--video-pattern", IMPORT["video_pattern"]]
                                if IMPORT["video_pattern"]
                                else []
                            ),
                            *(["--fp16"] if config["extraction"]["fp16"] else []),
                        ]
                    )
                    if input.videos
                    else ""
                ),
            log:
                "results/{dataset}/logs/import.log",
            benchmark:
                "results/{dataset}/benchmarks/import.tsv"
            threads: 1
            shell:
                "OMP_NUM_THREADS={threads} AVLOC_PROGRESS_FD=3 python -m pipeline.importers.actionformer "
                "--annotations {input.annotations:q} "
                "--features-dir {input.features:q} --out {params.out_dir:q} "
                "--release {params.release} --annotations-out {output.annotations:q} "
                "--missing {params.missing} --validation-fraction {params.validation_fraction} "
                "--dataset {wildcards.dataset} --encoder-set {params.encoder_set} {params.audio} 3>&2 > {log} 2>&1"

    if IMPORT["format"] == "perception_test":

        rule import_perception_test:
            input:
                annotations=IMPORT["annotations"],
                extra=IMPORT["extra_annotations"],
                audio=IMPORT["features_dir"],
                video=IMPORT["video_features_dir"],
            output:
                index=expand(
                    "results/{{dataset}}/features/{encoder_set}/index.json",
                    encoder_set=ENCODER_SET,
                ),
                stats=expand(
                    "results/{{dataset}}/features/{encoder_set}/stats.json",
                    encoder_set=ENCODER_SET,
                ),
                manifest=expand(
                    "results/{{dataset}}/features/{encoder_set}/shards/import.json",
                    encoder_set=ENCODER_SET,
                ),
                annotations="results/{dataset}/annotations.json",
            params:
                out_dir=lambda wildcards: f"results/{wildcards.dataset}/features/{ENCODER_SET}",
                task=IMPORT["task"],
                missing=IMPORT["missing"],
                validation_fraction=IMPORT["validation_fraction"],
                audio_features=json.dumps(IMPORT["audio_features"], sort_keys=True),
                video_features=json.dumps(IMPORT["video_features"], sort_keys=True),
                encoder_set=ENCODER_SET,
            log:
                "results/{dataset}/logs/import.log",
            benchmark:
                "results/{dataset}/benchmarks/import.tsv"
            shell:
                "AVLOC_PROGRESS_FD=3 python -m pipeline.importers.perception_test "
                "--annotations {input.annotations:q} --extra-annotations {input.extra:q} "
                "--features-dir {input.audio:q} --video-features-dir {input.video:q} "
                "--audio-features {params.audio_features:q} --video-features {params.video_features:q} "
                "--out {params.out_dir:q} --annotations-out {output.annotations:q} "
                "--task {params.task} --missing {params.missing} "
                "--validation-fraction {params.validation_fraction} --dataset {wildcards.dataset} "
                "--encoder-set {params.encoder_set} 3>&2 > {log} 2>&1"

        # The challenge's entry of each run: its first seed's detections on our test subset (the
        # release's valid split), labels mapped back to the release's ids; `rule all` asks for
        # them.
        SUBMISSIONS = expand(
            "results/{dataset}/runs/{run}/submission.json",
            dataset=DATASET,
            run=RUNS,
        )

        rule perception_test_submission:
            input:
                events=first_seed_events,
                annotations="results/{dataset}/annotations.json",
            output:
                "results/{dataset}/runs/{run}/submission.json",
            params:
                task=IMPORT["task"],
            log:
                "results/{dataset}/logs/submission/{run}.log",
            shell:
                "python -m pipeline.importers.perception_test submit --results {input.events:q} "
                "--annotations {input.annotations:q} --task {params.task} --out {output:q} > {log} 2>&1"
