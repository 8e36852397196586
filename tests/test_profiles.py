"""The Snakemake profiles (profiles/local, profiles/slurm) and the Docker image definition.

The profiles are checked against the workflow itself: every rule they name must exist, and a
dry run of the workflow on the tiny synthetic data set must accept them and show their threads,
resources and groups on the planned jobs. The SLURM profile is dry-run without its `executor`
key, since the SLURM executor plugin is not a dependency of the project.
"""

from __future__ import annotations

import fnmatch
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from humanfriendly import parse_timespan
from packaging.specifiers import SpecifierSet
from snakemake.utils import available_cpu_count

ROOT = Path(__file__).resolve().parents[1]
PROFILES = {name: ROOT / "profiles" / name / "config.yaml" for name in ("local", "slurm")}
DOCKERFILE = ROOT / "docker" / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
RULE_NAME = re.compile(r"^\s*rule (\w+):", re.MULTILINE)
# sbatch options that snakemake-executor-plugin-slurm sets itself and refuses in slurm_extra.
PLUGIN_MANAGED_SBATCH_OPTIONS = re.compile(
    r"--(gres|gpus|mem|mem-per-cpu|cpus-per-task|ntasks|time|partition|account|nodes)\b"
)
TINY_CONFIG = {
    "dataset": {"name": "tiny", "synth": {"size": "tiny", "num_classes": 3}},
    "extraction": {"shard_size": 2},
    "runs": {
        "audio_only": {"model": {"name": "actionformer", "modalities": ["audio"]}},
        "fusion": {"model": {"name": "actionformer", "modalities": ["audio", "visual"]}},
    },
    # the segment stage's defaults are the paper's (ResNet-50 and VGGish weights, absent here)
    "segments": {"enabled": False},
}
TINY_NUM_SHARDS = 3  # the tiny data set has 6 videos, in shards of 2
TINY_RUNS = ("audio_only", "fusion")


def load_profile(name: str) -> dict:
    """The parsed config.yaml of one profile."""
    return yaml.safe_load(PROFILES[name].read_text())


def workflow_rules() -> set[str]:
    """Names of the rules defined in pipeline/rules/*.smk."""
    return {
        name
        for path in (ROOT / "pipeline" / "rules").glob("*.smk")
        for name in RULE_NAME.findall(path.read_text())
    }


def rules_named_in(profile: dict) -> set[str]:
    """Every rule name a profile uses in set-threads, set-resources or groups."""
    names = set(profile.get("set-threads") or {})
    names |= set(profile.get("set-resources") or {})
    names |= set(profile.get("groups") or {})
    return names


def start_dry_run(workdir: Path, profile_dir: Path) -> subprocess.Popen:
    """Start a dry run of the whole workflow on the tiny data set with a profile."""
    workdir.mkdir(parents=True)
    config_file = workdir / "tiny_config.yaml"
    config_file.write_text(yaml.safe_dump(TINY_CONFIG))
    command = [
        sys.executable,
        "-m",
        "snakemake",
        "-s",
        str(ROOT / "Snakefile"),
        "--directory",
        str(workdir),
        "--configfile",
        str(config_file),
        "--profile",
        str(profile_dir),
        "--dry-run",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("SNAKEMAKE_PROFILE", None)
    return subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
    )


@pytest.fixture(scope="module")
def dry_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[int, str]]:
    """Exit status and printout of the dry runs with each profile, run side by side.

    The SLURM profile runs without its `executor` key (the plugin is not installed here).
    """
    tmp_path = tmp_path_factory.mktemp("profiles")
    slurm_profile = load_profile("slurm")
    del slurm_profile["executor"]
    # Without the executor the dry run plans local jobs, whose threads Snakemake caps at the
    # local cores; on a cluster each job gets its own node, so give the plan enough cores.
    slurm_profile["cores"] = 64
    slurm_dir = tmp_path / "slurm_profile"
    slurm_dir.mkdir()
    (slurm_dir / "config.yaml").write_text(yaml.safe_dump(slurm_profile))
    processes = {
        "local": start_dry_run(tmp_path / "local_run", PROFILES["local"].parent),
        "slurm": start_dry_run(tmp_path / "slurm_run", slurm_dir),
    }
    results = {}
    for name, process in processes.items():
        printout, _ = process.communicate(timeout=180)
        results[name] = (process.returncode, printout)
    return results


def planned_jobs(printout: str) -> list[dict]:
    """The jobs of a dry run's printout: rule name, threads, resources and enclosing group."""
    jobs: list[dict] = []
    group = None
    for line in printout.splitlines():
        if match := re.search(r"Group job (\w+)", line):
            group = match.group(1)
        elif match := re.match(r"(\s*)rule (\w+):", line):
            in_group = group is not None and match.group(1) != ""
            group = group if in_group else None
            jobs.append({"rule": match.group(2), "threads": 1, "resources": {}, "group": group})
        elif jobs and (match := re.match(r"\s+threads: (\d+)$", line)):
            jobs[-1]["threads"] = int(match.group(1))
        elif jobs and (match := re.match(r"\s+resources: (.*)$", line)):
            jobs[-1]["resources"] = dict(
                item.split("=", 1) for item in match.group(1).split(", ") if "=" in item
            )
    return jobs


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of docker/Dockerfile, continuation lines joined."""
    joined = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    instructions = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, arguments = line.partition(" ")
            instructions.append((keyword.upper(), arguments.strip()))
    return instructions


def dockerignored(path: str) -> bool:
    """Whether .dockerignore keeps `path` (relative to the build context) out of the context.

    The last pattern that matches the path or one of its parent folders decides, as in Docker.
    """
    patterns = [
        line.strip()
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    parts = Path(path).parts
    candidates = ["/".join(parts[: end + 1]) for end in range(len(parts))]
    ignored = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        glob = pattern.lstrip("!").strip("/")
        if any(fnmatch.fnmatchcase(candidate, glob) for candidate in candidates):
            ignored = not negated
    return ignored


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_profile_parses_to_a_mapping(name: str) -> None:
    profile = load_profile(name)
    assert isinstance(profile, dict)
    assert profile["keep-going"] is True
    assert profile["rerun-incomplete"] is True
    assert profile["printshellcmds"] is True
    assert isinstance(profile["latency-wait"], int)


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_profile_names_only_rules_of_the_workflow(name: str) -> None:
    known = workflow_rules()
    assert {"synth", "extract_shard", "index", "train", "infer", "evaluate", "report"} <= known
    named = rules_named_in(load_profile(name))
    assert named, f"profiles/{name} sets nothing per rule"
    assert named <= known, f"profiles/{name} names unknown rules: {sorted(named - known)}"


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_heavy_rules_get_threads_and_memory(name: str) -> None:
    profile = load_profile(name)
    for rule in ("extract_shard", "train"):
        assert profile["set-threads"][rule] >= 2
        assert profile["set-resources"][rule]["mem_mb"] >= 4000


def test_local_profile_uses_every_core() -> None:
    assert load_profile("local")["cores"] == "all"


def test_slurm_profile_settings() -> None:
    profile = load_profile("slurm")
    assert profile["executor"] == "slurm"
    assert profile["jobs"] == 100
    defaults = profile["default-resources"]
    assert parse_timespan(defaults["runtime"]) >= 60
    assert defaults["mem_mb"] >= 1000
    for rule, resources in profile["set-resources"].items():
        if "runtime" in resources:
            assert parse_timespan(resources["runtime"]) >= 60, rule
        # SLURM's CPU count and the job's OMP_NUM_THREADS ({threads}) must agree.
        if "cpus_per_task" in resources:
            assert resources["cpus_per_task"] == profile["set-threads"][rule], rule
        extra = str(resources.get("slurm_extra", ""))
        assert not PLUGIN_MANAGED_SBATCH_OPTIONS.search(extra), f"{rule}: {extra}"
    for rule in ("extract_shard", "train"):
        assert profile["set-resources"][rule]["gpu"] == 1
    assert set(profile["group-components"]) <= set(profile["groups"].values())


def test_slurm_plugin_pin_is_the_same_in_profile_and_readme() -> None:
    pin = re.compile(r"snakemake-executor-plugin-slurm==([\w.]+)")
    in_profile = set(pin.findall(PROFILES["slurm"].read_text()))
    in_readme = set(pin.findall((ROOT / "profiles" / "README.md").read_text()))
    assert len(in_profile) == 1
    assert in_readme == in_profile


def test_local_profile_dry_run(dry_runs: dict[str, tuple[int, str]]) -> None:
    returncode, printout = dry_runs["local"]
    assert returncode == 0, printout
    jobs = planned_jobs(printout)
    counts = {rule: sum(job["rule"] == rule for job in jobs) for rule in workflow_rules()}
    assert counts["synth"] == 1
    assert counts["extract_shard"] == TINY_NUM_SHARDS
    assert counts["train"] == len(TINY_RUNS)
    assert counts["report"] == 1
    profile = load_profile("local")
    for job in jobs:
        if job["rule"] in ("extract_shard", "train"):
            expected = min(profile["set-threads"][job["rule"]], available_cpu_count())
            assert job["threads"] == expected
            wanted_mb = profile["set-resources"][job["rule"]]["mem_mb"]
            assert job["resources"]["mem_mb"] == str(wanted_mb)


def test_slurm_profile_dry_run_without_the_plugin(dry_runs: dict[str, tuple[int, str]]) -> None:
    returncode, printout = dry_runs["slurm"]
    assert returncode == 0, printout
    profile = load_profile("slurm")
    jobs = planned_jobs(printout)
    gpu_jobs = [job for job in jobs if job["rule"] in ("extract_shard", "train")]
    assert len(gpu_jobs) == TINY_NUM_SHARDS + len(TINY_RUNS)
    for job in gpu_jobs:
        assert job["threads"] == profile["set-threads"][job["rule"]]
        assert job["resources"]["gpu"] == "1"
        assert job["resources"]["cpus_per_task"] == str(job["threads"])
    # Inference and evaluation of every run are bundled into one group job.
    grouped = [job for job in jobs if job["rule"] in profile["groups"]]
    assert len(grouped) == 2 * len(TINY_RUNS)
    assert {job["group"] for job in grouped} == {"postprocess"}
    assert all(job["group"] is None for job in jobs if job["rule"] not in profile["groups"])


def test_dockerfile_pins_base_image_and_python() -> None:
    instructions = dockerfile_instructions()
    bases = [arguments.split()[-1] for keyword, arguments in instructions if keyword == "FROM"]
    assert bases
    for base in bases:
        image, _, tag = base.partition(":")
        assert tag and tag != "latest", f"unpinned base image {base}"
    image, _, tag = bases[-1].partition(":")
    assert image == "python"
    python_version = re.match(r"(\d+\.\d+\.\d+)", tag).group(1)
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert python_version in SpecifierSet(pyproject["project"]["requires-python"])


def test_dockerfile_runs_as_non_root_user() -> None:
    users = [arguments for keyword, arguments in dockerfile_instructions() if keyword == "USER"]
    assert users, "docker/Dockerfile sets no USER, so the container runs as root"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0")


def test_dockerfile_installs_with_the_lock_file() -> None:
    instructions = dockerfile_instructions()
    copied = " ".join(arguments for keyword, arguments in instructions if keyword == "COPY")
    assert "requirements.lock" in copied
    installs = [
        arguments
        for keyword, arguments in instructions
        if keyword == "RUN" and "pip install" in arguments
    ]
    with_lock = [
        command
        for command in installs
        if re.search(r"(--constraint|-c) requirements\.lock", command)
    ]
    # The dependencies and the project itself are both installed against the lock.
    assert len(with_lock) == 2
    assert any(re.search(r"requirements\.lock \.(\s|$)", command) for command in with_lock)


def test_docker_build_context_holds_what_the_image_copies() -> None:
    for keyword, arguments in dockerfile_instructions():
        if keyword != "COPY" or arguments.startswith("--from"):
            continue
        sources = [word for word in arguments.split()[:-1] if not word.startswith("--")]
        for source in sources:
            assert (ROOT / source).exists(), f"docker/Dockerfile copies missing {source}"
            assert not dockerignored(source), f".dockerignore leaves out {source}"
    for heavy in (".venv", "results", ".snakemake", ".git"):
        assert dockerignored(heavy), f".dockerignore lets {heavy} into the build context"


@pytest.mark.skipif(shutil.which("hadolint") is None, reason="hadolint is not installed")
def test_dockerfile_passes_hadolint() -> None:
    result = subprocess.run(
        ["hadolint", "--failure-threshold", "style", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
