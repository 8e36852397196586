"""Tests of pipeline.segments: segment decoding (frame timestamps), labels, augmentations,
the accuracy metric, settings flags, and a tiny end-to-end run of the five CLIs."""

from __future__ import annotations

import csv
import dataclasses
import json
from pathlib import Path

import librosa
import numpy as np
import pytest
import torch
import zarr

from pipeline.config import settings_argument
from pipeline.segments import clips as clips_cli
from pipeline.segments import features as features_cli
from pipeline.segments import pretrain as pretrain_cli
from pipeline.segments import table as table_cli
from pipeline.segments import train as train_cli
from pipeline.segments.augment import augment_frames, random_crop_boxes, resized_crops
from pipeline.segments.clips import (
    SegmentClips,
    SegmentLabel,
    decode_video_segments,
    load_clips,
    read_segment_labels,
    write_segment_clips,
)
from pipeline.segments.features import load_features
from pipeline.segments.metrics import majority_accuracy, segment_accuracy
from pipeline.segments.pretrain import pretrain
from pipeline.segments.settings import (
    ClassifierSettings,
    ClipSettings,
    PretrainSettings,
    check_settings,
)
from pipeline.synth import generate
from tests import media

TINY_PRETRAIN = PretrainSettings(
    audio_backbone="conv",
    visual_backbone="conv",
    conv_width=4,
    conv_depth=2,
    conv_dim=8,
    feature_dim=8,
    projector_dims=(16, 16),
    crop_size=16,
    blur_kernel_size=3,
    optimizer="adamw",
    epochs=1,
    warmup_epochs=0,
    batch_size=2,
)
TINY_PRETRAIN_SETTINGS = {
    "audio_backbone": "conv", "visual_backbone": "conv", "conv_width": 4, "conv_depth": 2,
    "conv_dim": 8, "feature_dim": 8, "projector_dims": [16], "crop_size": 16,
    "blur_kernel_size": 3, "optimizer": "adamw", "epochs": 1, "warmup_epochs": 0, "batch_size": 2,
}  # fmt: skip


def test_segment_frames_lie_inside_their_segment(tmp_path: Path) -> None:
    video = tmp_path / "clip.mp4"
    media.make_video(video, duration_s=3.0, fps=10, size=(64, 48), tone_hz=440.0)
    settings = ClipSettings(frame_fps=5, frame_width=32, frame_height=24, n_mels=32)
    frames, log_mel = decode_video_segments(video, 3, settings)
    assert frames.shape == (3, 5, 24, 32, 3) and frames.dtype == np.uint8
    times = np.stack([k + np.arange(5) / 5 for k in range(3)])  # frame j of segment k: k + j / F
    segment_index = np.arange(3)[:, None]
    assert np.all((times >= segment_index) & (times < segment_index + 1))
    assert np.allclose(times[1], [1.0, 1.2, 1.4, 1.6, 1.8])
    # Each frame shows the source frame (10 fps) of its timestamp: the index is in its grey.
    for segment in range(3):
        for slot in range(5):
            expected = round(times[segment, slot] * 10) % media.INDEX_PERIOD
            assert media.frame_index(frames[segment, slot]) == expected
    # VGGish log-mel of one second: 96 frames x 32 bands, loudest band around the 440 Hz tone.
    assert log_mel.shape == (3, 96, 32)
    centres = librosa.mel_frequencies(n_mels=34, fmin=125.0, fmax=7500.0, htk=True)[1:-1]
    loudest = centres[log_mel.mean(axis=(0, 1)).argmax()]
    assert 380 < loudest < 500
    with pytest.raises(ValueError, match=r"the labels list 4 segments"):
        decode_video_segments(video, 4, settings)


def test_skipped_packets_are_recorded_per_video_in_the_clips_store(tmp_path: Path) -> None:
    # As extraction records them: an AC3 sound whose packets 0 and 30 no decoder accepts.
    clean, damaged = tmp_path / "clean.mkv", tmp_path / "damaged.mkv"
    media.make_video(clean, duration_s=2.0, codec="mpeg4", audio_codec="ac3", sample_rate=48000)
    media.make_damaged_copy(clean, damaged, kind="audio", packets={0, 30})
    labels = [
        SegmentLabel(video_id, segment, 0, "train", video_id)
        for video_id in ("clean", "damaged")
        for segment in range(2)
    ]
    settings = ClipSettings(frame_fps=2, frame_width=16, frame_height=16, n_mels=16)
    path = write_segment_clips(
        {"clean": clean, "damaged": damaged}, labels, 1, settings, tmp_path / "clips.zarr"
    )
    decode_errors = zarr.open_group(path, mode="r").attrs["decode_errors"]
    assert list(decode_errors) == ["damaged"] and list(decode_errors["damaged"]) == ["audio"]
    assert decode_errors["damaged"]["audio"]["packets"] == 2
    assert decode_errors["damaged"]["audio"]["seconds"] == pytest.approx(2 * 1536 / 48000)


def _write_labels(tmp_path: Path, rows: list[tuple], subsets: dict[str, str]) -> tuple[Path, Path]:
    segments = tmp_path / "segments.csv"
    with segments.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(clips_cli.SEGMENTS_COLUMNS)
        writer.writerows(rows)
    annotations = tmp_path / "annotations.json"
    database = {
        vid: {"duration": 3.0, "subset": s, "annotations": []} for vid, s in subsets.items()
    }
    annotations.write_text(json.dumps({"version": "t", "database": database}))
    return segments, annotations


def test_read_segment_labels_checks_the_file(tmp_path: Path) -> None:
    rows = [("a", 0, 0, 1, "dog", 0), ("a", 1, 1, 2, "background", 2), ("b", 0, 0, 1, "cat", 1)]
    segments, annotations = _write_labels(tmp_path, rows, {"a": "train", "b": "test"})
    labels = read_segment_labels(segments, annotations, num_classes=2)
    assert [(x.video_id, x.segment, x.label_id, x.subset) for x in labels] == [
        ("a", 0, 0, "train"),
        ("a", 1, 2, "train"),
        ("b", 0, 1, "test"),
    ]
    with pytest.raises(ValueError, match="check --num-classes"):
        read_segment_labels(segments, annotations, num_classes=3)  # background is not 3
    rows[1] = ("a", 2, 2, 3, "background", 2)
    segments, annotations = _write_labels(tmp_path, rows, {"a": "train", "b": "test"})
    with pytest.raises(ValueError, match="segment 2 of a, expected 1"):
        read_segment_labels(segments, annotations, num_classes=2)
    interleaved = [("a", 0, 0, 1, "dog", 0), ("b", 0, 0, 1, "cat", 1), ("a", 1, 1, 2, "dog", 0)]
    segments, annotations = _write_labels(tmp_path, interleaved, {"a": "train", "b": "test"})
    with pytest.raises(ValueError, match="rows of a must be consecutive"):
        read_segment_labels(segments, annotations, num_classes=2)
    segments, annotations = _write_labels(tmp_path, rows[:1], {"b": "test"})
    with pytest.raises(ValueError, match="video a is not in"):
        read_segment_labels(segments, annotations, num_classes=2)


def test_crop_boxes_stay_in_the_frame_and_full_box_is_identity() -> None:
    generator = torch.Generator().manual_seed(0)
    boxes = random_crop_boxes(200, 48, 64, generator, scale=(0.5, 1.0))
    assert torch.all(boxes[:, 0] >= 0) and torch.all(boxes[:, 2] <= 64 + 1e-4)
    assert torch.all(boxes[:, 1] >= 0) and torch.all(boxes[:, 3] <= 48 + 1e-4)
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]) / (48 * 64)
    assert torch.all(area <= 1.0 + 1e-5) and area.max() > 0.8 and area.min() > 0.3
    frames = torch.rand(2, 3, 48, 64)
    full = torch.tensor([[0.0, 0.0, 64.0, 48.0]] * 2)
    resized = resized_crops(frames[..., :48], torch.tensor([[0.0, 0.0, 48.0, 48.0]] * 2), 48)
    assert torch.allclose(resized, frames[..., :48], atol=1e-6)
    assert resized_crops(frames, full, 24).shape == (2, 3, 24, 24)
    # The left half of a frame stretched to full width: output column 2c+1 is between
    # input columns c and c+1.
    square = frames[..., :48]
    half = resized_crops(square, torch.tensor([[0.0, 0.0, 24.0, 48.0]] * 2), 48)
    assert torch.allclose(half[..., 1:45:2], 0.75 * square[..., 0:22] + 0.25 * square[..., 1:23])


def _augment(frames: torch.Tensor, seed: int, **switches) -> torch.Tensor:
    settings = dataclasses.replace(
        PretrainSettings(),
        crop_size=32,
        blur_kernel_size=7,
        **{"crop": False, "blur": False} | switches,
    )
    return augment_frames(frames.clone(), torch.Generator().manual_seed(seed), settings)


def test_augmentations_keep_shapes_and_are_seeded() -> None:
    frames = torch.rand(6, 3, 48, 64)
    first, again = (
        _augment(frames, 3, crop=True, blur=True),
        _augment(frames, 3, crop=True, blur=True),
    )
    assert first.shape == (6, 3, 32, 32)
    assert torch.equal(first, again)
    assert not torch.allclose(first, _augment(frames, 4, crop=True, blur=True))
    # No switch on: the centre crop only, identical for every seed.
    assert torch.equal(_augment(frames, 0), _augment(frames, 1))


def test_each_augmentation_does_what_its_name_says() -> None:
    torch.manual_seed(0)
    frames = torch.rand(64, 3, 32, 32)
    plain = _augment(frames, 0)
    flipped = _augment(frames, 0, flip=True)
    changed = [not torch.equal(a, b) for a, b in zip(flipped, plain, strict=True)]
    assert 16 < sum(changed) < 48  # p 0.5
    index = changed.index(True)
    assert torch.equal(flipped[index], plain[index].flip(-1))
    grey = _augment(frames, 0, grayscale=True)
    grey_rows = [i for i in range(64) if not torch.equal(grey[i], plain[i])]
    assert 3 <= len(grey_rows) <= 25  # p 0.2
    assert torch.allclose(grey[grey_rows[0], 0], grey[grey_rows[0], 1])
    solarized = _augment(frames, 0, solarize=True)
    solar_rows = [i for i in range(64) if not torch.equal(solarized[i], plain[i])]
    assert 1 <= len(solar_rows) <= 16  # p 0.1
    row = plain[solar_rows[0]]
    assert torch.allclose(solarized[solar_rows[0]], torch.where(row >= 0.5, 1 - row, row))
    jittered = _augment(frames, 0, color_jitter=True)
    assert 40 <= sum(not torch.equal(a, b) for a, b in zip(jittered, plain, strict=True)) <= 62
    blurred = _augment(frames, 0, blur=True)
    blurred_rows = [i for i in range(64) if not torch.equal(blurred[i], plain[i])]
    assert 16 < len(blurred_rows) < 48  # p 0.5
    i = blurred_rows[0]
    assert blurred[i].diff(dim=-1).abs().mean() < 0.7 * plain[i].diff(dim=-1).abs().mean()


def test_segment_accuracy_and_majority_by_hand() -> None:
    logits = torch.tensor([[[3.0, 0.0, 1.0], [0.0, 2.0, 1.0], [0.0, 0.0, 5.0], [9.0, 0.0, 0.0]]])
    labels = torch.tensor([[0, 2, 2, 1]])  # right, wrong, right, (padding)
    mask = torch.tensor([[True, True, True, False]])
    assert segment_accuracy(logits, labels, mask) == pytest.approx(2 / 3)
    assert segment_accuracy(logits, labels) == pytest.approx(2 / 4)
    with pytest.raises(ValueError, match="do not match"):
        segment_accuracy(logits, labels[:, :3])
    label, accuracy = majority_accuracy(np.array([2, 2, 0, 1, 2]), np.array([2, 0, 2, 2]))
    assert (label, accuracy) == (2, 0.75)


def test_settings_from_the_config_values() -> None:
    values = {"projector_dims": [32, 16], "shared_projector": False, "epochs": 12}
    settings = check_settings(PretrainSettings, values, "segments.pretrain")
    assert settings.projector_dims == (32, 16) and settings.shared_projector is False
    assert settings.epochs == 12 and settings.crop_scale == PretrainSettings().crop_scale
    as_float = check_settings(PretrainSettings, {"learning_rate": 1}, "segments.pretrain")
    assert isinstance(as_float.learning_rate, float) and as_float.learning_rate == 1.0
    with pytest.raises(ValueError, match=r"'segments.pretrain.epoch'; valid keys here"):
        check_settings(PretrainSettings, {"epoch": 3}, "segments.pretrain")
    with pytest.raises(ValueError, match="audio_backbone"):
        PretrainSettings(audio_backbone="resnet50")


@pytest.mark.parametrize("cli", [clips_cli, pretrain_cli, features_cli, train_cli, table_cli])
def test_every_step_prints_its_help(cli, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--help"])
    assert exit_info.value.code == 0
    assert "usage:" in capsys.readouterr().out


def test_a_step_reads_its_settings_json(tmp_path: Path) -> None:
    settings_file = tmp_path / "settings.json"
    settings_file.write_text('{"theta": 0.5}')
    for text in ('{"theta": 0.5}', str(settings_file)):
        values = settings_argument(text)
        assert check_settings(ClassifierSettings, values, "--settings").theta == 0.5
    with pytest.raises(ValueError, match=r"'--settings.thet'; valid keys here"):
        check_settings(ClassifierSettings, settings_argument('{"thet": 1.0}'), "--settings")
    with pytest.raises(ValueError, match="--settings is not valid JSON"):
        settings_argument('{"theta": }')
    with pytest.raises(ValueError, match="neither a JSON object nor an existing file"):
        settings_argument(str(tmp_path / "absent.json"))
    settings_file.write_text("[1]")
    with pytest.raises(ValueError, match="must be a JSON object, got list"):
        settings_argument(str(settings_file))


def _random_clips(num_segments: int = 12) -> SegmentClips:
    rng = np.random.default_rng(0)
    return SegmentClips(
        frames=rng.integers(0, 256, (num_segments, 2, 16, 24, 3), dtype=np.uint8),
        log_mel=rng.normal(size=(num_segments, 96, 8)).astype(np.float32),
        video_ids=np.array([f"v{i // 4}" for i in range(num_segments)]),
        segments=np.arange(num_segments) % 4,
        label_ids=rng.integers(0, 3, num_segments),
        subsets=np.array(["train"] * num_segments),
        num_classes=2,
        settings=ClipSettings(),
    )


def test_pretraining_is_seeded() -> None:
    clips = _random_clips()
    settings = dataclasses.replace(TINY_PRETRAIN, epochs=2)
    first, again = pretrain(clips, settings), pretrain(clips, settings)
    other = pretrain(clips, dataclasses.replace(settings, seed=1))
    assert len(first.epoch_losses) == 2
    assert first.epoch_losses == again.epoch_losses
    assert first.epoch_losses != other.epoch_losses


def test_tiny_end_to_end(tmp_path: Path) -> None:
    data = tmp_path / "tiny"
    generate(data, "tiny", 0, 3)
    out = tmp_path / "segments"
    videos = sorted(str(path) for path in (data / "videos").glob("*.mp4"))
    assert clips_cli.main(
        [*videos, "--segments", str(data / "segments.csv"), "--annotations",
         str(data / "annotations.json"), "--num-classes", "3", "--out", str(out / "clips.zarr"),
          "--settings", json.dumps({"frame_fps": 2, "frame_width": 24, "frame_height": 24})]
    ) == 0  # fmt: skip
    clips = load_clips(out / "clips.zarr")
    assert clips.frames.shape[1:] == (2, 24, 24, 3) and clips.log_mel.shape[1:] == (96, 64)
    with (data / "segments.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(clips.label_ids) == len(rows)
    assert clips.label_ids.tolist() == [int(row["label_id"]) for row in rows]

    assert pretrain_cli.main(
        ["--clips", str(out / "clips.zarr"), "--out", str(out / "avbt.pt"),
         "--settings", json.dumps(TINY_PRETRAIN_SETTINGS)]
    ) == 0  # fmt: skip
    checkpoint = torch.load(out / "avbt.pt", weights_only=True)
    assert checkpoint["format"] == "avbt-v2" and "state_dict" in checkpoint
    assert features_cli.main(
        ["--clips", str(out / "clips.zarr"), "--checkpoint", str(out / "avbt.pt"),
         "--out", str(out / "features.npz")]
    ) == 0  # fmt: skip
    features = load_features(out / "features.npz")
    assert features.audio.shape == features.visual.shape == (len(rows), 8)
    assert np.isfinite(features.audio).all() and np.isfinite(features.visual).all()

    for model in ("audio", "visual", "sum", "tacma"):
        assert train_cli.main(
            ["--features", str(out / "features.npz"), "--model", model, "--out",
             str(out / model), "--settings",
             json.dumps({"epochs": 1, "hidden_dim": 8, "attention_dim": 4, "output_dim": 8})]
        ) == 0  # fmt: skip
        torch.load(out / model / "model.pt", weights_only=True)
        # each test segment's prediction (for the results viewer) scores the test accuracy
        metrics = json.loads((out / model / "metrics.json").read_text())
        predicted = metrics["test_predictions"]
        test_rows = [
            row for row, subset in zip(rows, clips.subsets, strict=True) if subset == "test"
        ]
        assert sum(map(len, predicted.values())) == len(test_rows)
        correct = [
            predicted[row["video_id"]][int(row["segment"])] == int(row["label_id"])
            for row in test_rows
        ]
        assert np.mean(correct) == pytest.approx(metrics["test_accuracy"])
    run_args = [
        arg
        for model in ("audio", "visual", "sum", "tacma")
        for arg in ("--run", model, "avbt", str(out / model / "metrics.json"),
                    str(out / "avbt.json"))
    ]  # fmt: skip
    assert table_cli.main(
        [*run_args, "--title", "tiny", "--out", str(out / "table.md"), "--json",
         str(out / "metrics.json")]
    ) == 0  # fmt: skip
    summary = json.loads((out / "metrics.json").read_text())
    assert [row["name"] for row in summary["rows"]] == [
        "AV-BT audio only",
        "AV-BT visual only",
        "AV-BT audio-visual (sum)",
        "AV-BT + TACMA",
    ]
    labels = np.array([int(row["label_id"]) for row in rows])
    test_labels, train_labels = labels[clips.subsets == "test"], labels[clips.subsets == "train"]
    majority = np.bincount(train_labels).argmax()
    assert summary["majority_baseline"]["test_accuracy"] == pytest.approx(
        np.mean(test_labels == majority)
    )
    for row in summary["rows"]:
        assert 0.0 <= row["test_accuracy"] <= 1.0 and row["num_test_segments"] == len(test_labels)
    table = (out / "table.md").read_text()
    assert "| AV-BT + TACMA |" in table and "| Majority class" in table
    assert "wins with" in table or "tie at" in table


def _row_metrics(model: str, test_accuracy: float) -> dict:
    return {
        "model": model,
        "settings": {"theta": 1.0},
        "test_accuracy": test_accuracy,
        "validation_accuracy": 0.5,
        "num_parameters": 10,
        "train_segments_per_s": 100.0,
        "num_segments": {"train": 8, "validation": 4, "test": 10},
        "majority_label_id": 3,
        "majority_test_accuracy": 0.6,
        "num_classes": 3,
    }


PRETRAINING = {
    "num_parameters": {"audio_encoder": 7, "visual_encoder": 5, "total": 20},
    "train_segments_per_s": 50.0,
    "epoch_losses": [3.0, 2.0],
    "settings": {"shared_projector": True},
}


def _runs(accuracies: dict[str, tuple[str, float]]) -> list[table_cli.RunInput]:
    return [
        table_cli.RunInput(name, "avbt", _row_metrics(model, accuracy), PRETRAINING)
        for name, (model, accuracy) in accuracies.items()
    ]


def test_table_names_the_winner_and_the_baseline() -> None:
    accuracies = {"audio": ("audio", 0.5), "visual": ("visual", 0.6), "tacma": ("tacma", 0.8)}
    summary = table_cli.collect(_runs(accuracies))
    assert [row["encoder_parameters"] for row in summary["rows"]] == [7, 5, 12]
    assert [row["theta"] for row in summary["rows"]] == [None, None, 1.0]
    assert summary["winners"] == ["AV-BT + TACMA"]
    assert table_cli.verdict(summary) == (
        "AV-BT + TACMA wins with 80.0 % test accuracy, 20.0 points above AV-BT visual only; "
        "the majority-class baseline scores 60.0 %, 20.0 points below the best row."
    )
    assert "| Majority class (background) | | | 60.0 % |" in table_cli.render(summary, "t")
    accuracies["visual"] = ("visual", 0.8)
    assert "AV-BT visual only and AV-BT + TACMA tie at 80.0 %" in table_cli.verdict(
        table_cli.collect(_runs(accuracies))
    )


def test_table_labels_ablation_rows_by_run_name() -> None:
    accuracies = {"tacma": ("tacma", 0.8), "tacma_theta0": ("tacma", 0.7)}
    summary = table_cli.collect(_runs(accuracies))
    assert [row["name"] for row in summary["rows"]] == [
        "AV-BT + TACMA",
        "AV-BT + TACMA (tacma_theta0)",
    ]
    assert "| AV-BT + TACMA (tacma_theta0) | avbt | 1 | 70.0 % |" in table_cli.render(summary, "t")


def test_table_refuses_runs_scored_on_different_test_sets() -> None:
    runs = _runs({"audio": ("audio", 0.5), "tacma": ("tacma", 0.8)})
    runs[1].metrics["num_segments"]["test"] = 11
    with pytest.raises(ValueError, match="different test sets"):
        table_cli.collect(runs)


def test_table_cli_names_a_missing_metrics_file(tmp_path: Path, capsys) -> None:
    args = ["--run", "tacma", "avbt", str(tmp_path / "nope.json"), str(tmp_path / "a.json")]
    code = table_cli.main([*args, "--title", "t", "--out", str(tmp_path / "t.md"), "--json",
                           str(tmp_path / "m.json")])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 1
    assert "run tacma: metrics" in err and "nope.json" in err
    assert not (tmp_path / "t.md").exists()
