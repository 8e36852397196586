"""The shared torch runtime: devices, seeding, deterministic kernels and training checkpoints.

Checkpoints load with ``torch.load(..., weights_only=True)``: everything saved is a tensor or a
plain Python value (dict, list, tuple, str, int, float, bool, None); random-number-generator
states are converted (numpy's key array to a tensor), so that a checkpoint never needs the
unsafe pickle loader.

This module imports torch: the weight-free classic encoders never import it.
"""

from __future__ import annotations

import contextlib
import copy
import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pipeline.io import atomic_path


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> Path:
    """Write ``state`` to ``path`` atomically (temporary file, then rename)."""
    path = Path(path)
    with atomic_path(path) as partial:
        torch.save(state, partial)
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint with the safe loader; the error names the file and what to do."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except (RuntimeError, EOFError, OSError) as err:
        raise ValueError(f"{path} is not a readable checkpoint ({err}); delete it") from err


def rng_state() -> dict[str, Any]:
    """States of the torch (CPU and CUDA), numpy and Python global generators."""
    kind, keys, position, has_gauss, cached_gaussian = np.random.get_state()
    version, python_state, gauss_next = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "position": int(position),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached_gaussian),
        },
        "python": {"version": version, "state": list(python_state), "gauss_next": gauss_next},
    }


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore the generators saved by :func:`rng_state`."""
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    numpy_state = state["numpy"]
    np.random.set_state(
        (
            numpy_state["kind"],
            numpy_state["keys"].numpy().astype(np.uint32),
            numpy_state["position"],
            numpy_state["has_gauss"],
            numpy_state["cached_gaussian"],
        )
    )
    python_state = state["python"]
    random.setstate(
        (python_state["version"], tuple(python_state["state"]), python_state["gauss_next"])
    )


def seed_everything(seed: int) -> None:
    """Seed the torch, numpy and Python global generators."""
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


@contextlib.contextmanager
def deterministic_algorithms(enabled: bool) -> Iterator[None]:
    """Use deterministic torch kernels inside the block, restoring the previous setting after."""
    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(enabled or previous)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous)


def resolve_device(device: str) -> torch.device:
    """Turn a device setting (``training.device``, ``extraction.device``) into a torch device.

    Args:
        device: ``"auto"`` (the GPU when one is present, else the CPU), ``"cpu"``, ``"cuda"``
            or ``"cuda:N"``.

    Raises:
        ValueError: the string is not one of these, or CUDA (or GPU ``N``) is asked for but
            not present.
    """
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cpu":
        return torch.device("cpu")
    if device == "cuda" or device.startswith("cuda:"):
        index_text = device.partition(":")[2]
        if index_text and not index_text.isdigit():
            raise ValueError(f"device {device!r}: expected 'cuda:N' with an integer N")
        if not torch.cuda.is_available():
            raise ValueError(
                f"device {device!r} requested but CUDA is not available here; "
                "use device 'cpu' or 'auto'"
            )
        if index_text and int(index_text) >= torch.cuda.device_count():
            raise ValueError(
                f"device {device!r} requested but only {torch.cuda.device_count()} CUDA "
                "device(s) are visible"
            )
        return torch.device(device)
    raise ValueError(f"device {device!r} not understood; use 'auto', 'cpu', 'cuda' or 'cuda:N'")


def _comparable(run_cfg: dict[str, Any]) -> str:
    """The run config without scheduling keys, which a resumed run may change."""
    comparable = copy.deepcopy(run_cfg)
    for key in ("device", "num_workers"):
        comparable["training"].pop(key, None)
    return json.dumps(comparable, sort_keys=True)


def save_run_state(
    checkpoints: Path, state: dict[str, Any], run_cfg: dict[str, Any], *modules: Any
) -> None:
    """Write ``last.pt`` (and ``epoch_NNN.pt`` when ``keep_epoch_checkpoints``) after an epoch.

    Args:
        checkpoints: the run's checkpoint folder.
        state: loop state: ``epoch``, ``best``, ``last_metrics``, ``log``, ``data`` (plain).
        run_cfg: the resolved run config (compared on resume).
        modules: detector, EMA model, optimizer, scheduler.
    """
    detector, ema, optimizer, scheduler = modules
    payload = {
        "run_config": run_cfg,
        **state,
        "model": detector.state_dict(),
        "ema": ema.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "rng": rng_state(),
        # crops and data order are functions of (seed, epoch): this is their whole state
        "data_rng": {"seed": run_cfg["training"]["seed"], "next_epoch": state["epoch"] + 1},
    }
    save_checkpoint(checkpoints / "last.pt", payload)
    if run_cfg["training"].get("keep_epoch_checkpoints"):
        save_checkpoint(checkpoints / f"epoch_{state['epoch']:03d}.pt", payload)


def resume_run_state(
    path: Path, run_cfg: dict[str, Any], data: dict[str, Any], *modules: Any
) -> dict[str, Any]:
    """Load ``last.pt`` into detector, EMA, optimizer, scheduler and the global generators.

    Returns the loop state saved by :func:`save_run_state`. Refuses a checkpoint written with
    another run config (scheduling keys ``device`` and ``num_workers`` aside) or on other data
    (``state["data"]``: a fingerprint of the features, statistics and annotations).
    """
    detector, ema, optimizer, scheduler = modules
    checkpoint = load_checkpoint(path)  # on the CPU: RNG states must stay there
    if _comparable(checkpoint["run_config"]) != _comparable(run_cfg):
        raise ValueError(
            f"{path} was written by a run with another config; delete {path.parent} to start "
            "afresh or train into another --out folder"
        )
    if checkpoint.get("data") != data:
        raise ValueError(
            f"{path} was written on other features, statistics or annotations "
            f"({checkpoint.get('data')} != {data}); delete {path.parent} to start afresh"
        )
    detector.load_state_dict(checkpoint["model"])
    ema.load_state_dict(checkpoint["ema"])
    optimizer.load_state_dict(checkpoint["optimizer"])
    scheduler.load_state_dict(checkpoint["scheduler"])
    set_rng_state(checkpoint["rng"])
    return {key: checkpoint[key] for key in ("epoch", "best", "last_metrics", "log", "data")}
