# The synthetic audio-visual benchmark: videos, UnAV-format annotations, boxes, AVE-style segments.


if config["dataset"]["source"] == "synth":

    rule synth:
        output:
            videos=expand(
                "results/{dataset}/videos/{video_id}.mp4",
                dataset=DATASET,
                video_id=VIDEOS,
            ),
            manifest=expand("results/{dataset}/videos/manifest.json", dataset=DATASET),
            annotations=expand("results/{dataset}/annotations.json", dataset=DATASET),
            boxes=expand("results/{dataset}/boxes.json", dataset=DATASET),
            segments=expand("results/{dataset}/segments.csv", dataset=DATASET),
        params:
            out_dir=lambda wildcards, output: Path(output.annotations[0]).parent,
            size=config["dataset"]["synth"]["size"],
            seed=config["dataset"]["synth"]["seed"],
            num_classes=config["dataset"]["synth"]["num_classes"],
        log:
            expand("results/{dataset}/logs/synth.log", dataset=DATASET),
        benchmark:
            expand("results/{dataset}/benchmarks/synth.tsv", dataset=DATASET)[0]
        threads: 8
        shell:
            "python -m pipeline.synth --out {params.out_dir:q} --size {params.size} "
            "--seed {params.seed} --num-classes {params.num_classes} --workers {threads} "
            "> {log} 2>&1"
