"""Per-epoch reporting of a training run: console line, ``train_log.csv`` and TensorBoard."""

from __future__ import annotations

import csv
import logging
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def write_log_csv(path: str | Path, rows: list[dict[str, Any]]) -> None:
    """Rewrite ``train_log.csv`` from all epoch rows (kept in the checkpoint, so a resumed run
    never repeats or loses a row).

    Each row holds ``epoch``, ``lr``, ``losses`` (name -> mean value), ``val_average_map`` (None
    when not evaluated), ``seconds``, ``snippets`` and ``snippets_per_s``.
    """
    loss_keys = sorted({key for row in rows for key in row["losses"]} - {"loss"})
    fields = ["epoch", "lr", "loss", *loss_keys, "val_average_map", "seconds", "snippets"]
    fields.append("snippets_per_s")
    with Path(path).open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        for row in rows:
            flat = {key: value for key, value in row.items() if key != "losses"}
            flat.update(row["losses"])
            if flat["val_average_map"] is None:
                flat["val_average_map"] = ""
            writer.writerow(flat)


def tensorboard_writer(out_dir: str | Path) -> Any:
    """A TensorBoard writer when ``torch.utils.tensorboard`` imports (optional), else None."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        log.info("tensorboard is not installed; logging to train_log.csv only")
        return None
    return SummaryWriter(log_dir=str(Path(out_dir) / "tensorboard"))


def report_epoch(row: dict[str, Any], epochs: int, writer: Any) -> None:
    """Print one epoch's line and send its scalars to TensorBoard when there is a writer."""
    val = row["val_average_map"]
    print(
        f"epoch {row['epoch']}/{epochs}: loss {row['losses']['loss']:.4f}, lr {row['lr']:.2e}, "
        + ("" if val is None else f"val average mAP {100 * val:.2f}, ")
        + f"{row['snippets_per_s']:.0f} snippets/s ({row['seconds']:.1f} s)"
    )
    if writer is not None:
        for key, value in row["losses"].items():
            writer.add_scalar(f"train/{key}", value, row["epoch"])
        writer.add_scalar("train/lr", row["lr"], row["epoch"])
        writer.add_scalar("train/snippets_per_s", row["snippets_per_s"], row["epoch"])
        if val is not None:
            writer.add_scalar("val/average_mAP", val, row["epoch"])
