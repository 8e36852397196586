"""The ``avloc`` command: one subcommand per pipeline stage, and the stages' user-error wrapper.

``avloc COMMAND ARGS...`` hands ``ARGS`` to the stage's own ``main(argv)``, the function that
``python -m pipeline.<stage>`` runs and the Snakemake rules call, so ``avloc COMMAND --help``
prints the stage's own options. A stage's module is imported only when its command runs:
``avloc --help`` imports neither torch nor the stages. ``avloc run`` runs the Snakemake workflow.

Every stage's ``main`` is decorated with :func:`user_errors`: an error the user can cause (a
missing file, a bad setting or annotation, an unreadable video or store) prints one line,
``error: <message>``, on stderr and exits 1; any other exception is a bug and keeps its
traceback.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

# What every stage treats as the user's error. ValueError covers the project's ConfigError,
# AnnotationError, FeatureImportError and PublishedResultsError (all subclasses of it).
USER_ERRORS: tuple[type[Exception], ...] = (ValueError, FileNotFoundError)

StageMain = Callable[[Sequence[str] | None], int | None]


def user_errors(*extra: type[Exception]) -> Callable[[StageMain], StageMain]:
    """Decorate a stage's ``main(argv)``: a user error prints ``error: <message>`` and returns 1.

    Args:
        *extra: the stage's own user-error types beyond :data:`USER_ERRORS` (``StoreError``,
            ``DecodeError``, ``MissingWeightsError``, ...). The stage passes them because it
            imports them anyway; this module imports none, so ``avloc --help`` stays light.
            A ``KeyError`` listed here means an input file lacks a key and says so.

    Anything else propagates with its traceback, and so does argparse's ``SystemExit``.
    """
    caught = (*USER_ERRORS, *extra)

    def decorate(main: StageMain) -> StageMain:
        @functools.wraps(main)
        def run(argv: Sequence[str] | None = None) -> int | None:
            try:
                return main(argv)
            except caught as err:
                print(f"error: {_message(err)}", file=sys.stderr)
                return 1

        return run

    return decorate


def decoder_threads(text: str) -> int:
    """argparse type of a ``--threads`` option: a whole number >= 0 (0: one per core)."""
    try:
        threads = int(text)
    except ValueError:
        threads = -1
    if threads < 0:
        raise argparse.ArgumentTypeError(
            f"expected a whole number >= 0 (0: automatic), got {text!r}"
        )
    return threads


def _message(err: Exception) -> str:
    if isinstance(err, KeyError):  # str(KeyError) is only the key, quoted
        return f"an input file lacks the key {err}; rerun the step that wrote it"
    return str(err)


@dataclass(frozen=True)
class Stage:
    """A subcommand that runs one stage's ``main(argv)``."""

    module: str  # imported when the command runs; its main(argv) gets the remaining arguments
    summary: str  # one line in `avloc --help`


@dataclass(frozen=True)
class Group:
    """A subcommand whose second word picks the stage: ``avloc segments train ...``."""

    summary: str  # one line in `avloc --help`
    stages: dict[str, Stage]  # second word -> stage


RUN_SUMMARY = "run the whole workflow with Snakemake: avloc run --cores N ..."
RUN_HELP = """\
usage: avloc run [SNAKEMAKE ARGS...]

Run the workflow of the Snakefile in the current folder (the project folder) with this
environment's Snakemake: `avloc run ARGS` is `python -m snakemake ARGS`, exit code included,
with this environment's Python first on PATH for the jobs (as `make demo` does).

examples:
  avloc run --cores 2                                  the default job (workflow_config.yaml)
  avloc run --cores 8 --configfile my_config.yaml      your own configuration
  avloc run -n                                         dry run: list the jobs
  avloc run --cores 8 --rerun-incomplete               after a stopped run
  avloc run --unlock                                   before that, if Snakemake was killed
                                                       with SIGKILL (README: Stopping and
                                                       resuming says what else to do)
  avloc run --profile profiles/slurm                   on a SLURM cluster

`snakemake --help` lists every option.
"""

COMMANDS: dict[str, Stage | Group] = {
    "synth": Stage("pipeline.synth.__main__", "render the synthetic benchmark's videos and labels"),
    "extract": Stage("pipeline.extract", "extract a shard of videos into per-video feature stores"),
    "index": Stage("pipeline.index", "index the extracted stores; train-split feature statistics"),
    "import": Group(
        "import a benchmark's released features as feature stores",
        {
            "unav100": Stage("pipeline.importers.unav100", "UnAV-100 (I3D + VGGish, ONE-PEACE)"),
            "ave": Stage("pipeline.importers.ave", "AVE's HDF5 features, or --labels-only"),
            "actionformer": Stage(
                "pipeline.importers.actionformer", "ActionFormer releases (THUMOS14, EPIC)"
            ),
            "perception_test": Stage(
                "pipeline.importers.perception_test", "Perception Test; `submit` writes an entry"
            ),
        },
    ),
    "train": Stage("pipeline.detection.train", "train a temporal event detector"),
    "infer": Stage(
        "pipeline.detection.infer", "detect events in one video (--video) or in a whole split"
    ),
    "evaluate": Stage("pipeline.detection.evaluate", "score detections: mAP at tIoU thresholds"),
    "report": Stage("pipeline.detection.report", "write the detection runs' report.md"),
    "table": Stage("pipeline.detection.table", "the runs beside a benchmark's published numbers"),
    "segments": Group(
        "segment classification, the AVE task (AV-BT + TACMA)",
        {
            "clips": Stage("pipeline.segments.clips", "decode the 1-second segments"),
            "pretrain": Stage("pipeline.segments.pretrain", "AV-BT pre-training"),
            "features": Stage("pipeline.segments.features", "per-segment features"),
            "train": Stage("pipeline.segments.train", "train a segment classifier"),
            "table": Stage("pipeline.segments.table", "the classifiers' table"),
        },
    ),
    "spatial": Group(
        "spatial sound-source localisation (M2VSL)",
        {
            "train": Stage("pipeline.spatial.train", "train a sound-source localiser"),
            "evaluate": Stage("pipeline.spatial.evaluate", "score a localiser on a split"),
            "table": Stage("pipeline.spatial.table", "the localisers' table"),
        },
    ),
    "compare": Stage("pipeline.comparison", "compare every method of every task"),
}


def build_parser() -> argparse.ArgumentParser:
    """The parser of the command words only (``avloc``, ``avloc segments``): help and errors."""
    parser = argparse.ArgumentParser(
        prog="avloc",
        description="Audio-visual event localisation, from raw video to a paper table.",
        epilog="`avloc COMMAND --help` prints a command's options.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    commands.add_parser("run", help=RUN_SUMMARY, add_help=False)
    for name, command in COMMANDS.items():
        if isinstance(command, Stage):  # its own parser, in the stage, handles --help
            commands.add_parser(name, help=command.summary, add_help=False)
            continue
        group = commands.add_parser(name, help=command.summary, description=command.summary)
        steps = group.add_subparsers(dest="step", metavar="STEP", required=True)
        for step, stage in command.stages.items():
            steps.add_parser(step, help=stage.summary, add_help=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``avloc``; returns the exit code (argparse exits 2 on a bad command word)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    words = 2 if argv[:1] and isinstance(COMMANDS.get(argv[0]), Group) else 1
    chosen = build_parser().parse_args(argv[:words])  # exits on --help or a bad command word
    rest = argv[words:]
    if chosen.command == "run":
        return run_workflow(rest)
    command = COMMANDS[chosen.command]
    stage = command.stages[chosen.step] if isinstance(command, Group) else command
    return run_stage(stage, f"avloc {' '.join(argv[:words])}", rest)


def run_stage(stage: Stage, prog: str, argv: Sequence[str]) -> int:
    """Import ``stage`` and run its ``main(argv)``, its usage lines naming ``prog``."""
    stage_main: StageMain = importlib.import_module(stage.module).main
    # The stages build their parsers without a prog, so argparse takes it from sys.argv[0].
    program, sys.argv[0] = sys.argv[0], prog
    try:
        return stage_main(list(argv)) or 0
    finally:
        sys.argv[0] = program


def run_workflow(argv: Sequence[str]) -> int:
    """``python -m snakemake ARGS`` with this interpreter; Snakemake's exit code.

    The interpreter's folder goes first on ``PATH`` (as ``make demo`` does): the rules run
    ``python -m pipeline.<stage>``, which must be this environment's Python even when it is
    not activated (``.venv/bin/avloc run ...``).
    """
    if argv[:1] in (["-h"], ["--help"]):
        print(RUN_HELP, end="")
        return 0
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    command = [sys.executable, "-m", "snakemake", *argv]
    return subprocess.run(command, env=env, check=False).returncode


if __name__ == "__main__":
    sys.exit(main())
