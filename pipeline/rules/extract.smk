# Stage 1: one extraction job per shard of videos, then the dataset index and statistics. The
# extraction's progress lines (videos done, seconds of video per second, time left) go to its
# log and to the terminal: file descriptor 3 is Snakemake's stderr, taken before the log's
# redirection (pipeline.progress).


if config["dataset"]["source"] != "import":

    rule extract_shard:
        input:
            videos=shard_videos,
        output:
            "results/{dataset}/features/{encoder_set}/shards/{shard}.json",
        params:
            videos=shard_video_arguments,
            stamp=shard_stamp,
            settings=json.dumps(extraction_settings(config), sort_keys=True),
            out_dir=lambda wildcards: f"results/{wildcards.dataset}/features/{wildcards.encoder_set}",
            on_error=config["extraction"]["on_error"],
            max_damaged_fraction=config["extraction"]["max_damaged_fraction"],
            batch_size=config["extraction"]["batch_size"],
            device=config["extraction"]["device"],
        log:
            "results/{dataset}/logs/extract/{encoder_set}/{shard}.log",
        benchmark:
            "results/{dataset}/benchmarks/extract/{encoder_set}/{shard}.tsv"
        threads: 1
        shell:
            "OMP_NUM_THREADS={threads} AVLOC_PROGRESS_FD=3 python -m pipeline.extract "
            "--settings {params.settings:q} --out-dir {params.out_dir:q} --manifest {output:q} "
            "--on-error {params.on_error} --max-damaged-fraction {params.max_damaged_fraction} "
            "--batch-size {params.batch_size} --device {params.device} --threads {threads} "
            "-- {params.videos} 3>&2 > {log} 2>&1"

    rule index:
        input:
            manifests=expand(
                "results/{{dataset}}/features/{{encoder_set}}/shards/{shard}.json",
                shard=range(len(SHARDS)),
            ),
            annotations=[ANNOTATIONS] if ANNOTATIONS else [],
        output:
            index="results/{dataset}/features/{encoder_set}/index.json",
            stats="results/{dataset}/features/{encoder_set}/stats.json",
        params:
            annotations=lambda wildcards, input: " ".join(
                f"--annotations {shlex.quote(path)}" for path in input.annotations
            ),
            duration_tolerance=config["dataset"]["duration_tolerance_s"],
        log:
            "results/{dataset}/logs/extract/{encoder_set}/index.log",
        shell:
            "python -m pipeline.index {input.manifests:q} --index {output.index:q} "
            "--stats {output.stats:q} {params.annotations} "
            "--duration-tolerance-s {params.duration_tolerance} --dataset {wildcards.dataset} "
            "--encoder-set {wildcards.encoder_set} > {log} 2>&1"
