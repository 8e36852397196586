"""Tests of pipeline.cli: the ``avloc`` command and the stages' shared user-error wrapper."""

from __future__ import annotations

import importlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline import cli
from tests.pipeline.detection.helpers import train_on_videos

COMMAND_WORDS = [
    "run", "synth", "extract", "index", "import", "train", "infer", "evaluate", "report", "table",
    "segments", "spatial", "compare",
]  # fmt: skip

# Every stage command, with an option only that stage's own help prints.
STAGE_HELPS = [
    (["synth"], "--num-classes"),
    (["extract"], "--manifest"),
    (["index"], "--encoder-set"),
    (["import", "unav100"], "--release"),
    (["import", "ave"], "--segments-out"),
    (["import", "ave", "--labels-only"], "--annotations-out"),
    (["import", "actionformer"], "--feat-stride"),
    (["import", "perception_test"], "--video-features-dir"),
    (["import", "perception_test", "submit"], "--results"),
    (["train"], "--stats"),
    (["infer"], "--top-k"),
    (["evaluate"], "--tiou"),
    (["report"], "--title"),
    (["table"], "--benchmark"),
    (["segments", "clips"], "--num-classes"),
    (["segments", "pretrain"], "--clips"),
    (["segments", "features"], "--checkpoint"),
    (["segments", "train"], "--features"),
    (["segments", "table"], "--published"),
    (["spatial", "train"], "--boxes"),
    (["spatial", "evaluate"], "--heatmaps"),
    (["spatial", "table"], "--runs"),
    (["compare"], "--segments"),
]


def _listed(printed: str) -> list[str]:
    """The command words of an argparse help: the first word of each 4-space indented line."""
    lines = printed.splitlines()
    return [line.split()[0] for line in lines if line.startswith("    ") and line[4:5].strip()]


def _help(argv: list[str], capsys: pytest.CaptureFixture) -> str:
    with pytest.raises(SystemExit) as exit_info:
        cli.main([*argv, "--help"])
    assert exit_info.value.code == 0
    return capsys.readouterr().out


def test_help_lists_every_command(capsys) -> None:
    printed = _help([], capsys)
    assert printed.startswith("usage: avloc")
    assert _listed(printed) == COMMAND_WORDS


@pytest.mark.parametrize(("argv", "option"), STAGE_HELPS, ids=[" ".join(a) for a, _ in STAGE_HELPS])
def test_every_stage_prints_its_own_help(argv: list[str], option: str, capsys) -> None:
    printed = _help(argv, capsys)
    assert option in printed
    words = [word for word in argv if not word.startswith("-") and word != "submit"]
    # synth names its own program; the other stages take avloc's words as theirs
    prog = "python -m pipeline.synth" if argv == ["synth"] else f"avloc {' '.join(words)}"
    assert printed.startswith(f"usage: {prog} ")


@pytest.mark.parametrize(
    ("group", "steps"),
    [
        ("import", ["unav100", "ave", "actionformer", "perception_test"]),
        ("segments", ["clips", "pretrain", "features", "train", "table"]),
        ("spatial", ["train", "evaluate", "table"]),
    ],
)
def test_a_group_lists_its_steps(group: str, steps: list[str], capsys) -> None:
    printed = _help([group], capsys)
    assert printed.startswith(f"usage: avloc {group} ")
    assert _listed(printed) == steps


def test_run_help_is_avlocs_own(capsys) -> None:
    assert cli.main(["run", "--help"]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("usage: avloc run") and "avloc run --cores 2" in printed


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["bogus"], "invalid choice: 'bogus' (choose from 'run', 'synth', 'extract'"),
        (["segments", "bogus"], "invalid choice: 'bogus' (choose from 'clips', 'pretrain'"),
        ([], "the following arguments are required: COMMAND"),
        (["spatial"], "the following arguments are required: STEP"),
    ],
)
def test_a_bad_command_word_lists_the_valid_ones(argv: list[str], expected: str, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv)
    assert exit_info.value.code == 2
    assert expected in capsys.readouterr().err


def test_installed_command_is_quick_and_imports_no_stage() -> None:
    """The console script of pyproject.toml's [project.scripts], installed by `make setup`."""
    script = Path(sys.executable).parent / "avloc"
    assert script.exists(), f"{script} is missing: install the project (pip install -e .)"
    env = {**os.environ, "PYTHONPROFILEIMPORTTIME": "1"}  # stderr lists every module imported
    done = subprocess.run([script, "--help"], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    assert _listed(done.stdout) == COMMAND_WORDS
    imported = {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines()}
    assert "pipeline.cli" in imported
    assert not {"torch", "numpy", "snakemake", "pipeline.detection"} & imported


def _one_error_line(capsys: pytest.CaptureFixture) -> str:
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), captured.err
    return lines[0]


def test_a_missing_events_file_is_one_error_line(tmp_path: Path, capsys) -> None:
    annotations = tmp_path / "annotations.json"
    event = {"segment": [0.5, 2.0], "label": "beep", "label_id": 0}
    video = {"duration": 3.0, "subset": "test", "annotations": [event]}
    annotations.write_text(json.dumps({"version": "t", "database": {"v": video}}))
    missing = tmp_path / "events.json"
    argv = ["evaluate", "--annotations", str(annotations), "--events", str(missing)]
    assert cli.main([*argv, "--out", str(tmp_path / "metrics.json")]) == 1
    assert str(missing) in _one_error_line(capsys)
    assert not (tmp_path / "metrics.json").exists()


def test_a_missing_model_is_one_error_line(tmp_path: Path, capsys) -> None:
    missing = tmp_path / "missing.pt"
    assert cli.main(["infer", "--model", str(missing), "--video", str(tmp_path / "x.mp4")]) == 1
    assert _one_error_line(capsys) == f"error: checkpoint {missing} does not exist"


def test_a_bug_keeps_its_traceback(tmp_path: Path, monkeypatch, capsys) -> None:
    import pipeline.detection.evaluate as evaluate

    def broken(*args, **kwargs):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(evaluate, "evaluate_events", broken)
    argv = ["evaluate", "--annotations", "a.json", "--events", "e.json", "--out", "m.json"]
    with pytest.raises(ZeroDivisionError, match="a bug"):
        cli.main(argv)
    assert capsys.readouterr().err == ""


def test_user_errors_catches_the_stage_types_only(capsys) -> None:
    class StageError(RuntimeError):
        pass

    @cli.user_errors(StageError, KeyError)
    def stage(argv: list[str] | None = None) -> int:
        raise {"value": ValueError("bad value"), "file": FileNotFoundError("no such file"),
               "stage": StageError("bad store"), "key": KeyError("rows"),
               "bug": RuntimeError("a bug")}[argv[0]]  # fmt: skip

    for kind, message in [
        ("value", "error: bad value"),
        ("file", "error: no such file"),
        ("stage", "error: bad store"),
        ("key", "error: an input file lacks the key 'rows'; rerun the step that wrote it"),
    ]:
        assert stage([kind]) == 1
        assert _one_error_line(capsys) == message
    with pytest.raises(RuntimeError, match="a bug"):
        stage(["bug"])
    assert stage.__name__ == "stage"


def test_run_hands_its_arguments_to_snakemake(monkeypatch) -> None:
    calls = []

    def fake_run(command, env, check):
        calls.append((command, env))
        return subprocess.CompletedProcess(command, 3)

    monkeypatch.setattr(cli.subprocess, "run", fake_run)
    assert cli.main(["run", "--cores", "2", "--configfile", "my.yaml", "-n"]) == 3
    [(command, env)] = calls
    assert command == [sys.executable, "-m", "snakemake", "--cores", "2", "--configfile", "my.yaml",
                       "-n"]  # fmt: skip
    # the rules' `python -m pipeline.<stage>` must find this environment's Python
    assert env["PATH"].split(os.pathsep)[0] == str(Path(sys.executable).parent)


def test_run_reaches_this_environments_snakemake(capfd) -> None:
    assert cli.main(["run", "--version"]) == 0
    assert capfd.readouterr().out.strip().split(".")[0] == "9"


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory):
    """Two real 3 s videos, extracted; a run trained on them for one epoch."""
    return train_on_videos(tmp_path_factory.mktemp("trained"))


def test_infer_on_one_video_prints_its_events(trained, capsys) -> None:
    video = trained.videos[1]
    capsys.readouterr()  # drop what training printed
    argv = ["infer", "--model", str(trained.result.model_path), "--video", str(video)]
    assert cli.main([*argv, "--top-k", "3", "--device", "cpu"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["video"] == str(video)
    events = printed["events"]
    assert 0 < len(events) <= 3
    assert {event["label"] for event in events} <= {"beep", "boop"}
    assert all(0.0 <= event["segment"][0] < event["segment"][1] <= 3.0 for event in events)
    scores = [event["score"] for event in events]
    assert scores == sorted(scores, reverse=True)


def test_infer_takes_a_video_of_any_file_name(trained, tmp_path: Path, capsys) -> None:
    """Spaces, an accent, quotes, '#', '%' and a leading '.': any readable file is a video."""
    video = tmp_path / "my vidéo #1 'x' 100%" / '.it\'s a "clip".mp4'
    video.parent.mkdir()
    shutil.copy(trained.videos[1], video)
    capsys.readouterr()
    argv = ["infer", "--model", str(trained.result.model_path), "--video", str(video)]
    assert cli.main([*argv, "--top-k", "2", "--device", "cpu"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["video"] == str(video) and 0 < len(printed["events"]) <= 2


@pytest.mark.parametrize("module", ["pipeline.extract", "pipeline.segments.clips"])
@pytest.mark.parametrize("value", ["-1", "two", "1.5"])
def test_a_bad_threads_option_is_refused_before_any_work(module, value, tmp_path, capsys) -> None:
    """--threads is checked by the parser, before the settings or any video are read."""
    main = importlib.import_module(module).main
    with pytest.raises(SystemExit) as info:
        main([str(tmp_path / "missing.mp4"), "--threads", value, "--settings", "{}"])
    assert info.value.code == 2
    assert f"argument --threads: expected a whole number >= 0 (0: automatic), got {value!r}" in (
        capsys.readouterr().err
    )


@pytest.mark.parametrize("value", ["0", "1", "16"])
def test_decoder_threads_accepts_whole_numbers_from_zero(value) -> None:
    assert cli.decoder_threads(value) == int(value)
