# Audio-visual event localisation: synthesise or list videos, extract per-snippet features into
# one Zarr store per video, train detectors, infer, evaluate and report.
from snakemake.utils import min_version

from pipeline.config import validate_config


min_version("9.0")


# The default job's configuration applies only when no --configfile is given: a user's
# configuration stands alone (merged onto the schema's defaults, never onto the demo's).
if not workflow.configfiles:

    configfile: "workflow_config.yaml"


# `snakemake --report report.html` (or .zip): the outputs marked with report() in the rules,
# by task, with the captions of pipeline/rules/report/.
report: "pipeline/rules/report/workflow.rst"


# Used only with --software-deployment-method apptainer (see docker/README.md).
container: "avloc-0.1.0.sif"


# The JSON schema pipeline/schemas/config.schema.yaml, applied with its defaults; an unknown or
# invalid key fails here, before any job, with one line naming it (snakemake.utils.validate
# would print the whole schema).
config.update(
    validate_config(config, source=", ".join(map(str, workflow.configfiles)) or "config")
)


include: "pipeline/rules/common.smk"
include: "pipeline/rules/synth.smk"
include: "pipeline/rules/extract.smk"
include: "pipeline/rules/import.smk"
include: "pipeline/rules/train.smk"
include: "pipeline/rules/evaluate.smk"
include: "pipeline/rules/report.smk"
include: "pipeline/rules/segments.smk"
include: "pipeline/rules/spatial.smk"
include: "pipeline/rules/comparison.smk"
include: "pipeline/rules/viewer.smk"


# The default target: every table and report the data set's labels allow; an unlabelled video
# folder gets its features only, a sound-source localisation benchmark its spatial table only.
rule all:
    input:
        features=expand(
            "results/{dataset}/features/{encoder_set}/{name}",
            dataset=[] if SPATIAL_BENCHMARK else DATASET,
            encoder_set=ENCODER_SET,
            name=["index.json", "stats.json"],
        ),
        detection=expand(
            "results/{dataset}/{name}",
            dataset=DATASET,
            name=["report.md", "table.md", "comparison.md"] if ANNOTATIONS else [],
        ),
        viewer=expand(
            "results/{dataset}/viewer/index.html",
            dataset=DATASET if ANNOTATIONS else [],
        ),
        segments=expand(
            "results/{dataset}/segments/table.md",
            dataset=DATASET if SEGMENTS_AVAILABLE else [],
        ),
        spatial=expand(
            "results/{dataset}/spatial/table.md",
            dataset=DATASET if SPATIAL_AVAILABLE else [],
        ),
        submissions=SUBMISSIONS,
    default_target: True
