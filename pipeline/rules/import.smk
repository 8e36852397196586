# Stage 1 alternative: a benchmark's released features imported into the per-video store layout.


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
                "python -m pipeline.importers.unav100 --annotations {input.annotations:q} "
                "--features-dir {input.features:q} --out {params.out_dir:q} "
                "--release {params.release} --missing {params.missing} --dataset {wildcards.dataset} --encoder-set {ENCODER_SET} "
                "> {log} 2>&1"

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
                "python -m pipeline.importers.ave --annotations {input.dataset_dir:q} "
                "--features-dir {input.features:q} --out {params.out_dir:q} "
                "--annotations-out {output.annotations:q} --segments-out {output.segments:q} "
                "--dataset {wildcards.dataset} --encoder-set {ENCODER_SET} > {log} 2>&1"

    if IMPORT["format"] == "actionformer":

        rule import_actionformer:
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
                annotations="results/{dataset}/annotations.json",
            params:
                out_dir=lambda wildcards: f"results/{wildcards.dataset}/features/{ENCODER_SET}",
                release=IMPORT["release"],
                missing=IMPORT["missing"],
                validation_fraction=IMPORT["validation_fraction"],
            log:
                "results/{dataset}/logs/import.log",
            benchmark:
                "results/{dataset}/benchmarks/import.tsv"
            shell:
                "python -m pipeline.importers.actionformer --annotations {input.annotations:q} "
                "--features-dir {input.features:q} --out {params.out_dir:q} "
                "--release {params.release} --annotations-out {output.annotations:q} "
                "--missing {params.missing} --validation-fraction {params.validation_fraction} "
                "--dataset {wildcards.dataset} --encoder-set {ENCODER_SET} > {log} 2>&1"

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
            log:
                "results/{dataset}/logs/import.log",
            benchmark:
                "results/{dataset}/benchmarks/import.tsv"
            shell:
                "python -m pipeline.importers.perception_test "
                "--annotations {input.annotations:q} --extra-annotations {input.extra:q} "
                "--features-dir {input.audio:q} --video-features-dir {input.video:q} "
                "--out {params.out_dir:q} --annotations-out {output.annotations:q} "
                "--task {params.task} --missing {params.missing} "
                "--validation-fraction {params.validation_fraction} --dataset {wildcards.dataset} --encoder-set {ENCODER_SET} > {log} 2>&1"
