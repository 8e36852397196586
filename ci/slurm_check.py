"""Run the tiny workflow through profiles/slurm on a one-node SLURM cluster set up here (#14).

Each phase is timed and the times are printed at the end, also after a failure:

1. packages: Debian's slurm-wlm (slurmctld, slurmd, the client commands) and munge, installed
   with apt-get where their commands are missing, with services kept from starting
   (policy-rc.d: no systemd in a container; this script starts the daemons itself);
2. plugin: the project's `slurm` extra (pyproject.toml: the pinned executor plugin) installed
   into this environment against requirements.lock;
3. cluster: in a new temporary folder, a fresh munge key and munged on its own socket, and
   /etc/slurm/slurm.conf for this host (name, CPUs and memory from `slurmd -C`; no accounting
   database; proctrack/linuxproc and task/none, which need no cgroups and work in containers;
   select/cons_tres; everything else in the folder), then slurmctld and slurmd in the
   foreground as children of this script, until `sinfo` shows the node idle;
4. workflow: tests/test_workflow.py's TINY_CONFIG through `snakemake --profile profiles/slurm`
   with the cluster's partition and account added on the command line (and `--cores` where the
   node has fewer CPUs than the profile's largest job, the profile's documented switch for small
   nodes); every expected output must exist and every job must have been an sbatch job that
   SLURM completed. A job that pends while the node is idle (a request no node can meet) fails
   the check at once, naming the job, instead of waiting for the timeout;
5. rerun: the same command again must submit nothing ("Nothing to be done");
6. teardown, always (failure, timeout, Ctrl-C or SIGTERM included): jobs cancelled, the
   daemons stopped by their process ids, any process left from the cluster (found by a marker
   variable in its environment) killed by id, slurm.conf and the folder removed.

Outside the temporary folder only the packages and /etc/slurm/slurm.conf are written. The
configuration must lie where SLURM looks by default: the plugin's job step
(snakemake-executor-plugin-slurm-jobstep 0.6.1) drops every SLURM_* variable, SLURM_CONF
included, before its `srun`. An existing slurm.conf is never replaced (the check fails
instead), unless this script wrote it for a run that is gone. Ports are picked free and munged
runs on its own socket and key, so the machine's own munge, if any, is left alone.

Why Python rather than a shell script: the check starts three daemons and must stop exactly
those, by process id, on every way out; it parses `slurmd -C`, squeue and Snakemake's output,
reads the profile (YAML) and the pinned extra (TOML), and imports the tests' own tiny
configuration. try/finally with signal handlers, subprocess timeouts from one deadline and real
parsers do that more plainly than traps and sed, and ruff lints it with the rest of the project.

Needs root, apt-get and a Debian-like system (Debian 12: slurm-wlm 22.05). From the repository
root, with the project's environment (`make setup`):

    .venv/bin/python ci/slurm_check.py            # .ci/run runs it after `make test`
    .venv/bin/python ci/slurm_check.py --keep     # keep the temporary folder to look at
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import tomllib
import types
from collections.abc import Iterator
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
PROFILE = ROOT / "profiles" / "slurm"
APT_PACKAGES = ("slurm-wlm", "munge")
# What the check runs; a missing one means the packages are (re)installed.
COMMANDS = ("slurmctld", "slurmd", "sbatch", "squeue", "sinfo", "scontrol", "scancel", "munged")
PARTITION = "check"
SLURM_CONF = Path("/etc/slurm/slurm.conf")
CONF_MARKER = "# Written by avloc's ci/slurm_check.py for its test cluster in "
# In the environment of the daemons and of Snakemake, so of every process the cluster starts.
MARKER_VARIABLE = "AVLOC_SLURM_CHECK"
# Without an accounting database SLURM accepts any account name.
ACCOUNT = "avloc"
# Pending reasons of a job no node of the partition can ever run (more CPUs, memory or time
# than it allows): SLURM queues such a job without a word, so the check fails at once.
NEVER_RUNS = ("PartitionConfig", "BadConstraints", "PartitionNodeLimit", "PartitionTimeLimit")
PENDING_WHILE_IDLE_LIMIT_S = 90  # a job pending this long while the node is idle never starts
POLL_S = 5


class CheckError(Exception):
    """The check found a fault; the message says which."""


class StopRequestedError(Exception):
    """SIGTERM or SIGINT: stop, tear down."""


class Deadline:
    """One time limit for the whole check; every wait takes its timeout from here.

    Args:
        seconds: the time the check may take from now, teardown aside.
    """

    def __init__(self, seconds: float) -> None:
        self.end = time.monotonic() + seconds

    def remaining(self) -> float:
        left = self.end - time.monotonic()
        if left <= 0:
            raise CheckError("the check ran past its time limit (--timeout)")
        return left


class Phases:
    """Wall time of each phase, printed at the end whatever happened."""

    def __init__(self) -> None:
        self.start = time.monotonic()
        self.seconds: dict[str, float] = {}
        self.outcome: dict[str, str] = {}

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        print(f"\n== {name}", flush=True)
        started = time.monotonic()
        self.outcome[name] = "failed"
        try:
            yield
            self.outcome[name] = "ok"
        finally:
            self.seconds[name] = time.monotonic() - started
            print(f"== {name}: {self.outcome[name]} in {self.seconds[name]:.1f} s", flush=True)

    def report(self) -> None:
        print("\nslurm check, wall time per phase:")
        for name, seconds in self.seconds.items():
            print(f"  {name:<10} {seconds:7.1f} s  {self.outcome[name]}")
        print(f"  {'total':<10} {time.monotonic() - self.start:7.1f} s", flush=True)


def run(
    command: list[str],
    deadline: Deadline,
    env: dict[str, str] | None = None,
    check: bool = True,
    limit_s: float | None = None,
) -> subprocess.CompletedProcess:
    """Run a command to its end (stdout and stderr merged), within the deadline."""
    timeout = deadline.remaining() if limit_s is None else min(limit_s, deadline.remaining())
    result = subprocess.run(
        command,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout,
    )
    if check and result.returncode != 0:
        raise CheckError(f"`{' '.join(command)}` exited {result.returncode}:\n{result.stdout}")
    return result


def free_port() -> int:
    """A TCP port nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def tail(path: Path, lines: int = 40) -> str:
    """The last lines of a log file, or a note that it is missing."""
    if not path.exists():
        return f"({path} does not exist)"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


# -- phase 1: packages ---------------------------------------------------------------------


def install_packages(deadline: Deadline) -> None:
    missing = [command for command in COMMANDS if shutil.which(command) is None]
    if not missing:
        print("slurm-wlm and munge are installed")
        return
    print(f"missing {', '.join(missing)}: apt-get install {' '.join(APT_PACKAGES)}")
    policy = Path("/usr/sbin/policy-rc.d")
    made_policy = not policy.exists()
    if made_policy:  # keep the packages' init scripts from starting daemons we do not own
        policy.write_text("#!/bin/sh\nexit 101\n")
        policy.chmod(0o755)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        run(["apt-get", "update", "-qq"], deadline, env=env)
        run(
            ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *APT_PACKAGES],
            deadline,
            env=env,
        )
    finally:
        if made_policy:
            policy.unlink()
    still_missing = [command for command in COMMANDS if shutil.which(command) is None]
    if still_missing:
        raise CheckError(f"after apt-get install, still missing: {', '.join(still_missing)}")


# -- phase 2: plugin -----------------------------------------------------------------------


def install_plugin(deadline: Deadline) -> None:
    """The pins of pyproject's `slurm` extra, installed against the lock file."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    requirements = pyproject["project"]["optional-dependencies"]["slurm"]
    command = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    command += ["-c", str(ROOT / "requirements.lock"), *requirements]
    print(" ".join(requirements))
    run(command, deadline)
    version = run(
        [sys.executable, "-m", "pip", "show", "snakemake-executor-plugin-slurm"], deadline
    )
    print(next(line for line in version.stdout.splitlines() if line.startswith("Version")))


# -- phase 3: cluster ----------------------------------------------------------------------


class Cluster:
    """munged, slurmctld and slurmd of a one-node cluster: /etc/slurm/slurm.conf and, under
    one folder, everything else (munge key and socket, state, spool, logs).

    Args:
        folder: a new, empty folder of this cluster's own, removed by the caller.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.munge_socket = folder / "munge" / "munge.socket"
        self.logs = folder / "log"
        self.daemons: dict[str, subprocess.Popen] = {}
        self.env = {
            name: value
            for name, value in os.environ.items()
            if not name.startswith(("SLURM_", "SBATCH_", "SRUN_", "SQUEUE_"))
        }
        self.env[MARKER_VARIABLE] = str(folder)
        self.node: dict[str, str] = {}
        self.wrote_conf = False

    def node_hardware(self, deadline: Deadline) -> dict[str, str]:
        """This host as slurmd sees it: NodeName, CPUs, sockets, cores, threads, RealMemory."""
        printout = run(["slurmd", "-C"], deadline, env=self.env).stdout
        line = next(line for line in printout.splitlines() if line.startswith("NodeName="))
        return dict(item.split("=", 1) for item in line.split())

    def write_config(self, deadline: Deadline) -> None:
        """A fresh munge key, the folders, and slurm.conf for this host."""
        munge_dir = self.munge_socket.parent
        # munged wants every folder above its socket searchable by all (mode o+x)
        munge_dir.mkdir(mode=0o711)
        for folder in (self.logs, self.folder / "state", self.folder / "spool"):
            folder.mkdir(mode=0o700)
        key = munge_dir / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
        self.node = self.node_hardware(deadline)
        node_line = " ".join(f"{name}={value}" for name, value in self.node.items())
        host = self.node["NodeName"]
        settings = {
            "ClusterName": "avloccheck",
            "SlurmctldHost": f"{host}(127.0.0.1)",
            "SlurmctldPort": free_port(),
            "SlurmdPort": free_port(),
            "SlurmUser": "root",
            "SlurmdUser": "root",
            "AuthType": "auth/munge",
            "CredType": "cred/munge",
            "AuthInfo": f"socket={self.munge_socket}",
            "StateSaveLocation": self.folder / "state",
            "SlurmdSpoolDir": self.folder / "spool",
            "SlurmctldPidFile": self.folder / "slurmctld.pid",
            "SlurmdPidFile": self.folder / "slurmd.pid",
            "SlurmctldLogFile": self.logs / "slurmctld.log",
            "SlurmdLogFile": self.logs / "slurmd.log",
            "SlurmctldDebug": "info",
            "SlurmdDebug": "info",
            # no cgroups: works in a container or a VM without a cgroup hierarchy of its own
            "ProctrackType": "proctrack/linuxproc",
            "TaskPlugin": "task/none",
            "JobAcctGatherType": "jobacct_gather/none",
            # no slurmdbd: the configuration the sacct failure came from
            "AccountingStorageType": "accounting_storage/none",
            "JobCompType": "jobcomp/none",
            "SchedulerType": "sched/backfill",
            "SelectType": "select/cons_tres",
            "SelectTypeParameters": "CR_Core_Memory",
            "MpiDefault": "none",
            "ReturnToService": 2,
            # squeue reports a finished job this long (the plugin's status command; and the
            # check reads every job's final state from squeue)
            "MinJobAge": 3600,
            "KillWait": 5,
            "MailProg": "/bin/true",
        }
        lines = [f"{CONF_MARKER}{self.folder}"]
        lines += [f"{name}={value}" for name, value in settings.items()]
        lines.append(f"{node_line} NodeAddr=127.0.0.1 State=UNKNOWN")
        lines.append(f"PartitionName={PARTITION} Nodes={host} Default=YES State=UP")
        self.claim_conf()
        SLURM_CONF.write_text("\n".join(lines) + "\n")
        self.wrote_conf = True
        print(f"{SLURM_CONF}: node {node_line}")

    def claim_conf(self) -> None:
        """Make sure writing slurm.conf replaces nothing but a stale copy of our own."""
        SLURM_CONF.parent.mkdir(parents=True, exist_ok=True)
        if not SLURM_CONF.exists():
            return
        first_line = SLURM_CONF.read_text(errors="replace").partition("\n")[0]
        old_folder = first_line.removeprefix(CONF_MARKER)
        if first_line.startswith(CONF_MARKER) and not Path(old_folder).exists():
            print(f"replacing {SLURM_CONF}, left by a check whose folder {old_folder} is gone")
            return
        raise CheckError(
            f"{SLURM_CONF} exists: this machine has a SLURM configuration of its own (or a "
            "check is running), which this check will not replace"
        )

    def start(self, name: str, command: list[str]) -> None:
        log = (self.logs / f"{name}.out").open("w")
        self.daemons[name] = subprocess.Popen(
            command,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a Ctrl-C at the terminal reaches this script only
        )
        log.close()
        print(f"{name} started, pid {self.daemons[name].pid}")

    def wait_until(self, what: str, ready, deadline: Deadline, limit_s: float = 60) -> None:
        """Poll `ready()` until it holds; fail naming `what` and the daemons' logs."""
        give_up = time.monotonic() + min(limit_s, deadline.remaining())
        while time.monotonic() < give_up:
            for name, process in self.daemons.items():
                if process.poll() is not None:
                    raise CheckError(f"{name} exited {process.returncode} while waiting for {what}")
            if ready():
                return
            time.sleep(0.5)
        raise CheckError(f"timed out waiting for {what}")

    def daemon_logs(self) -> str:
        return "\n".join(
            f"-- {path.name}\n{tail(path, 20)}" for path in sorted(self.logs.glob("*"))
        )

    def node_state(self, deadline: Deadline) -> str:
        """The node's state as sinfo prints it (idle, mixed, allocated, drained, ...)."""
        printout = run(
            ["sinfo", "-h", "-N", "-o", "%T|%E"], deadline, env=self.env, check=False, limit_s=20
        )
        return printout.stdout.strip() if printout.returncode == 0 else ""

    def start_all(self, deadline: Deadline) -> None:
        self.write_config(deadline)
        key = self.munge_socket.parent / "munge.key"
        self.start(
            "munged",
            [
                "munged",
                "--foreground",
                f"--socket={self.munge_socket}",
                f"--key-file={key}",
                f"--pid-file={self.folder / 'munged.pid'}",
                f"--log-file={self.logs / 'munged.log'}",
                f"--seed-file={self.munge_socket.parent / 'munged.seed'}",
            ],
        )
        self.wait_until("munged's socket", self.munge_socket.exists, deadline)
        self.start("slurmctld", ["slurmctld", "-D", "-i"])

        def controller_up() -> bool:
            ping = run(["scontrol", "ping"], deadline, env=self.env, check=False, limit_s=20)
            return "UP" in ping.stdout

        self.wait_until("slurmctld to answer `scontrol ping`", controller_up, deadline)
        self.start("slurmd", ["slurmd", "-D"])
        self.wait_until(
            "the node to be idle in sinfo",
            lambda: self.node_state(deadline).startswith("idle"),
            deadline,
        )
        print(run(["sinfo"], deadline, env=self.env).stdout.rstrip())

    def leftover_pids(self) -> list[int]:
        """Processes of this cluster (job steps, jobs): the marker variable in their
        environment, which the daemons, Snakemake and the jobs inherit and nothing else has."""
        marker = f"{MARKER_VARIABLE}={self.folder}".encode()
        pids = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            with contextlib.suppress(OSError):
                if marker in (entry / "environ").read_bytes().split(b"\0"):
                    pids.append(int(entry.name))
        return pids

    def stop(self) -> None:
        """Cancel the jobs, stop the daemons by pid, kill what is left of the cluster."""
        if "slurmctld" in self.daemons and self.daemons["slurmctld"].poll() is None:
            with contextlib.suppress(subprocess.SubprocessError, OSError):
                subprocess.run(
                    ["scancel", "--full", f"--partition={PARTITION}"],
                    env=self.env,
                    capture_output=True,
                    timeout=15,
                )
                give_up = time.monotonic() + 20
                while time.monotonic() < give_up:
                    queue = subprocess.run(
                        ["squeue", "-h", "-o", "%i"],
                        env=self.env,
                        capture_output=True,
                        text=True,
                        timeout=10,
                    )
                    if queue.returncode != 0 or not queue.stdout.strip():
                        break
                    time.sleep(1)
        for name in ("slurmd", "slurmctld", "munged"):
            process = self.daemons.get(name)
            if process is None or process.poll() is not None:
                continue
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)
            print(f"{name} (pid {process.pid}) stopped")
        for pid in self.leftover_pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
                print(f"killed pid {pid}, left over from the cluster")
        ours = f"{CONF_MARKER}{self.folder}\n"
        if self.wrote_conf and SLURM_CONF.read_text(errors="replace").startswith(ours):
            SLURM_CONF.unlink()
            print(f"{SLURM_CONF} removed")


# -- phases 4 and 5: the workflow ----------------------------------------------------------


def workflow_tests() -> types.ModuleType:
    """The project's workflow tests (tests/test_workflow.py): their tiny configuration and
    their parser of Snakemake's job table."""
    sys.path.insert(0, str(ROOT))
    from tests import test_workflow

    return test_workflow


def tiny_config() -> dict:
    """The tiny workflow configuration of the project's own workflow tests."""
    return workflow_tests().TINY_CONFIG


def snakemake_command(
    workdir: Path, profile: dict, node: dict[str, str], profile_dir: Path = PROFILE
) -> list[str]:
    """`snakemake --profile profiles/slurm` plus what this cluster needs on the command line.

    A command-line key replaces the profile's key whole, so the account and partition are
    given with the profile's own default resources. `--cores` only where the node has fewer
    CPUs than the profile's largest job (the profile's switch for small nodes), and a first
    status check after 5 s instead of 40 s (the plugin's default) to finish sooner.
    """
    defaults = {**profile["default-resources"], "slurm_account": ACCOUNT}
    defaults["slurm_partition"] = PARTITION
    command = [
        sys.executable,
        "-m",
        "snakemake",
        "-s",
        str(ROOT / "Snakefile"),
        "--directory",
        str(workdir),
        "--configfile",
        str(workdir / "config.yaml"),
        "--profile",
        str(profile_dir),
        "--default-resources",
        *(f"{name}={value}" for name, value in defaults.items()),
        "--slurm-init-seconds-before-status-checks",
        "5",
    ]
    if int(node["CPUs"]) < int(profile["cores"]):
        print(f"the node has {node['CPUs']} CPUs, the profile's jobs up to {profile['cores']}")
        command += ["--cores", node["CPUs"]]
    return command


def slurm_jobs(cluster: Cluster, deadline: Deadline, states: str = "all") -> dict[str, dict]:
    """SLURM's jobs (finished ones for MinJobAge): id -> comment, CPUs, memory, limit, state."""
    fields = ("comment", "cpus", "memory", "time_limit", "state", "time_used", "reason")
    printout = run(
        ["squeue", "-h", f"--states={states}", "-o", "%i|%k|%C|%m|%l|%T|%M|%r"],
        deadline,
        env=cluster.env,
        limit_s=20,
    ).stdout
    jobs = {}
    for line in printout.splitlines():
        job_id, *values = line.split("|")
        jobs[job_id] = dict(zip(fields, values, strict=True))
    return jobs


def run_workflow(
    command: list[str], cluster: Cluster, deadline: Deadline, log_path: Path
) -> tuple[int, str]:
    """Run Snakemake to its end (its printout in `log_path`); fail early when a job cannot
    run: SLURM says no node ever can, or it pends while the node is idle."""
    env = {**cluster.env, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    env.pop("SNAKEMAKE_PROFILE", None)
    print(" ".join(command), flush=True)
    pending_since: dict[str, float] = {}
    with log_path.open("w") as log:
        process = subprocess.Popen(
            command, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
        )
        try:
            while process.poll() is None:
                deadline.remaining()
                time.sleep(POLL_S)
                state = cluster.node_state(deadline)
                if state.startswith(("drain", "down", "fail")):
                    raise CheckError(f"the node went {state}")
                pending = slurm_jobs(cluster, deadline, states="PENDING")
                now = time.monotonic()
                for job_id in list(pending_since):
                    if job_id not in pending:
                        del pending_since[job_id]
                for job_id, job in pending.items():
                    if not state.startswith("idle"):
                        pending_since[job_id] = now  # the node is busy: pending is fine
                    waited = now - pending_since.setdefault(job_id, now)
                    if job["reason"] in NEVER_RUNS or waited > PENDING_WHILE_IDLE_LIMIT_S:
                        raise CheckError(
                            f"SLURM job {job_id} ({job['comment']}) cannot start (pending, "
                            f"reason {job['reason']}): it asks for {job['cpus']} CPUs, "
                            f"{job['memory']} of memory and {job['time_limit']}; the node has "
                            f"{cluster.node['CPUs']} CPUs and {cluster.node['RealMemory']} MB"
                        )
        finally:
            if process.poll() is None:  # stopped early; the teardown cancels the SLURM jobs
                process.terminate()
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
    return process.returncode, log_path.read_text(errors="replace")


def submitted_jobs(printout: str) -> dict[str, list[str]]:
    """SLURM job id -> the Snakemake job ids it ran, from Snakemake's printout.

    A job's block ("rule NAME:" ... "jobid: N") comes before its submission line ("Job N has
    been submitted with SLURM jobid S"); a group job's block ("Group job NAME ...") lists its
    jobs, indented, and its submission line names the group's id instead of a job's.
    """
    slurm: dict[str, list[str]] = {}
    group_members: list[str] = []
    for line in printout.splitlines():
        if match := re.match(r"(\s*)jobid: (\d+)$", line):
            if len(match[1]) > 4:  # indented twice: a job inside a group block
                group_members.append(match[2])
        elif match := re.search(r"Job (\S+) has been submitted with SLURM jobid (\d+)", line):
            slurm[match[2]] = [match[1]] if match[1].isdigit() else group_members
            if not match[1].isdigit():
                group_members = []
    return slurm


def finished_jobs(printout: str) -> dict[str, str]:
    """Snakemake job id -> rule, of every job Snakemake reported finished."""
    return dict(re.findall(r"Finished jobid: (\d+) \(Rule: (\w+)\)", printout))


def check_first_run(
    returncode: int, printout: str, workdir: Path, dataset: str, runs: list[str], jobs: dict
) -> None:
    if returncode != 0:
        raise CheckError(f"snakemake exited {returncode}:\n{printout[-6000:]}")
    results = workdir / "results" / dataset
    expected = [results / name for name in ("report.md", "comparison.md", "table.md")]
    expected.append(results / "viewer" / "index.html")
    expected += [results / "runs" / run / "metrics.json" for run in runs]
    missing = [str(path.relative_to(workdir)) for path in expected if not path.is_file()]
    if missing:
        raise CheckError(f"missing outputs: {', '.join(missing)}")
    print(f"{len(expected)} expected outputs present")

    planned = workflow_tests().job_counts(printout)
    finished = finished_jobs(printout)
    finished_counts = {rule: list(finished.values()).count(rule) for rule in planned}
    if finished_counts != planned:
        raise CheckError(f"planned jobs {planned}, finished {finished_counts}")
    submitted = submitted_jobs(printout)
    in_slurm = [job for members in submitted.values() for job in members]
    # `all` has no action: Snakemake finishes it itself, without a job
    outside = sorted(
        f"{rule} (job {job})"
        for job, rule in finished.items()
        if rule != "all" and job not in in_slurm
    )
    if outside or len(in_slurm) != len(set(in_slurm)):
        raise CheckError(f"jobs not run as exactly one sbatch job each: {outside or in_slurm}")
    not_completed = {
        job_id: jobs.get(job_id, {}).get("state", "unknown to squeue")
        for job_id in submitted
        if jobs.get(job_id, {}).get("state") != "COMPLETED"
    }
    if not_completed:
        raise CheckError(f"SLURM jobs not COMPLETED: {not_completed}")
    print(
        f"{len(in_slurm)} Snakemake jobs (all but `all`) ran as {len(submitted)} sbatch jobs, "
        "all COMPLETED:"
    )
    print(f"  {'jobid':>5}  {'cpus':>4}  {'memory':>7}  {'limit':>8}  {'used':>5}  rules")
    for job_id, members in sorted(submitted.items(), key=lambda item: int(item[0])):
        job = jobs[job_id]
        rules = " ".join(sorted(finished[member] for member in members))
        print(
            f"  {job_id:>5}  {job['cpus']:>4}  {job['memory']:>7}  {job['time_limit']:>8}  "
            f"{job['time_used']:>5}  {rules}"
        )


def check_rerun(returncode: int, printout: str, before: dict, after: dict) -> None:
    if returncode != 0:
        raise CheckError(f"the second snakemake exited {returncode}:\n{printout[-4000:]}")
    if "Nothing to be done" not in printout:
        raise CheckError(f"the second run found work to do:\n{printout[-4000:]}")
    if "submitted with SLURM jobid" in printout or set(after) - set(before):
        raise CheckError(f"the second run submitted jobs: {sorted(set(after) - set(before))}")
    print("second run: Nothing to be done, no job submitted")


# -- main ----------------------------------------------------------------------------------


def raise_interrupted(signum: int, _frame) -> None:
    """The first SIGTERM or SIGINT stops the check; later ones wait for the teardown."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    raise StopRequestedError(f"stopped by {signal.Signals(signum).name}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--timeout", type=float, default=900, help="seconds for the whole check")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    parser.add_argument(
        "--profile",
        type=Path,
        default=PROFILE,
        help="the profile folder to run (default profiles/slurm; its GPU requests, if any, "
        "need GPUs that this cluster does not configure)",
    )
    args = parser.parse_args()
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        print("slurm check: needs root and apt-get (a Debian system)", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, raise_interrupted)
    signal.signal(signal.SIGINT, raise_interrupted)

    deadline = Deadline(args.timeout)
    phases = Phases()
    folder = Path(tempfile.mkdtemp(prefix="avloc-slurm-check-"))
    folder.chmod(0o711)  # munged's socket lies below
    cluster = Cluster(folder / "cluster")
    workdir = folder / "work"
    failure = None
    try:
        with phases.phase("packages"):
            install_packages(deadline)
        with phases.phase("plugin"):
            install_plugin(deadline)
        with phases.phase("cluster"):
            cluster.folder.mkdir(mode=0o711)
            cluster.start_all(deadline)
        profile = yaml.safe_load((args.profile / "config.yaml").read_text())
        config = tiny_config()
        dataset = config["dataset"]["name"]
        workdir.mkdir()
        (workdir / "config.yaml").write_text(yaml.safe_dump(config))
        command = snakemake_command(workdir, profile, cluster.node, args.profile.resolve())
        with phases.phase("workflow"):
            returncode, printout = run_workflow(
                command, cluster, deadline, folder / "snakemake-1.log"
            )
            jobs = slurm_jobs(cluster, deadline)
            check_first_run(returncode, printout, workdir, dataset, list(config["runs"]), jobs)
        with phases.phase("rerun"):
            returncode, printout = run_workflow(
                command, cluster, deadline, folder / "snakemake-2.log"
            )
            check_rerun(returncode, printout, jobs, slurm_jobs(cluster, deadline))
    except (CheckError, StopRequestedError, subprocess.TimeoutExpired) as error:
        failure = error
        print(f"\nFAILED: {error}", file=sys.stderr, flush=True)
        for log in sorted(folder.glob("snakemake-*.log")):
            print(f"-- {log.name}\n{tail(log, 60)}", file=sys.stderr)
        if cluster.logs.exists():
            print(cluster.daemon_logs(), file=sys.stderr)
        for log in sorted(workdir.glob(".snakemake/slurm_logs/**/*.log"))[-3:]:
            print(f"-- {log.relative_to(workdir)}\n{tail(log, 30)}", file=sys.stderr)
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        with phases.phase("teardown"):  # each step has its own timeout: 2 min at most
            cluster.stop()
            if args.keep:
                print(f"kept {folder}")
            else:
                shutil.rmtree(folder, ignore_errors=True)
        phases.report()
    if failure is not None:
        return 1
    print("slurm check passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
