"""pipeline.runtime: device settings and atomic checkpoints."""

from __future__ import annotations

import os
import pickle

import pytest
import torch

from pipeline.runtime import load_checkpoint, resolve_device, save_checkpoint


def test_resolve_device():
    assert resolve_device("cpu") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    with pytest.raises(ValueError, match="'tpu' not understood"):
        resolve_device("tpu")
    with pytest.raises(ValueError, match="expected 'cuda:N' with an integer N"):
        resolve_device("cuda:first")
    if torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA device\\(s\\) are visible"):
            resolve_device(f"cuda:{torch.cuda.device_count()}")
    else:
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda:0")


def test_checkpoint_round_trip_and_no_partial_file_on_failure(tmp_path):
    path = save_checkpoint(tmp_path / "run" / "last.pt", {"epoch": 3, "w": torch.ones(2)})
    assert load_checkpoint(path)["epoch"] == 3
    with pytest.raises((AttributeError, pickle.PicklingError)):  # a lambda cannot be pickled
        save_checkpoint(path, {"epoch": 4, "bad": lambda: None})
    assert os.listdir(path.parent) == ["last.pt"]
    assert load_checkpoint(path)["epoch"] == 3  # the finished checkpoint is untouched
