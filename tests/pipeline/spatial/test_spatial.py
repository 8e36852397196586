"""Spatial sound localisation: metrics by hand, grid frames, ground truth, train -> table."""

import json
from pathlib import Path

import numpy as np
import pytest

from pipeline.config import extraction_settings, validate_config
from pipeline.decode import iter_frames
from pipeline.encoders.classic_visual import block_mean
from pipeline.extract import extract_shard
from pipeline.index import build_index
from pipeline.spatial import checkpoint, evaluate, table, train
from pipeline.spatial.data import (
    boxes_mask,
    evaluation_frames,
    event_snippets,
    frame_objects,
    grid_frames,
    load_boxes,
    load_split,
)
from pipeline.spatial.metrics import (
    adaptive_mask,
    ciou,
    ciou_ap,
    ciou_auc,
    f_score,
    f_score_curve,
    frame_scores,
    half_max_mask,
    iou,
    summarise,
)
from pipeline.store import StoreError, StoreInfo, read_store, write_store
from pipeline.synth import generate


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The tiny synthetic set (3 classes), extracted with visual grids, and its index."""
    root = tmp_path_factory.mktemp("spatial")
    generate(root, "tiny", 0, 3)
    settings = extraction_settings(validate_config({"extraction": {"visual_grid": True}}))
    features = root / "features"
    extract_shard(
        sorted((root / "videos").glob("*.mp4")),
        settings=settings,
        out_dir=features,
        manifest_path=features / "shards" / "0.json",
        device="cpu",
    )
    build_index(
        [features / "shards" / "0.json"],
        index_path=features / "index.json",
        dataset="tiny",
        encoder_set="classic",
    )
    return {
        "root": root,
        "index": features / "index.json",
        "boxes": root / "boxes.json",
        "annotations": root / "annotations.json",
    }


# ---------------------------------------------------------------- metrics on hand-made maps


def _box_mask(x0: int, y0: int, x1: int, y1: int, size: int = 8) -> np.ndarray:
    return boxes_mask([[x0, y0, x1, y1]], size, size)


def test_perfect_map_scores_one_and_a_map_off_the_box_scores_zero() -> None:
    gt = _box_mask(1, 2, 4, 6)  # 3 x 4 = 12 pixels
    perfect = gt.astype(float)
    scores = frame_scores(perfect, gt, [[1, 2, 4, 6]], [])
    assert scores["ciou"] == 1.0 and scores["ciou_half_max"] == 1.0
    assert scores["iou"] == 1.0 and scores["fscore"] == pytest.approx(1.0)
    assert scores["peak_in_sounding"] == 1.0
    off = _box_mask(5, 0, 8, 4).astype(float)  # 12 pixels, disjoint from the box
    assert ciou(adaptive_mask(off, int(gt.sum())), gt) == 0.0
    assert frame_scores(off, gt, [[1, 2, 4, 6]], [[5, 0, 8, 4]])["peak_on_silent"] == 1.0
    assert f_score(half_max_mask(off), gt) == 0.0 and iou(half_max_mask(off), gt) == 0.0


def test_half_overlap_by_hand() -> None:
    gt = _box_mask(0, 0, 4, 4)  # 16 pixels
    shifted = _box_mask(2, 0, 6, 4).astype(float)  # 16 pixels, 8 of them in the box
    # cIoU = |P & G| / (|G| + |P \ G|) = 8 / (16 + 8) = 1/3; IoU is the same.
    assert ciou(adaptive_mask(shifted, 16), gt) == pytest.approx(1 / 3)
    assert iou(half_max_mask(shifted), gt) == pytest.approx(1 / 3)
    # Precision = recall = 1/2: F = 1.3 * 0.25 / (0.3 * 0.5 + 0.5) = 0.325 / 0.65 = 0.5.
    assert f_score(half_max_mask(shifted), gt) == pytest.approx(0.5)


def test_adaptive_threshold_keeps_as_many_pixels_as_the_ground_truth() -> None:
    heatmap = np.arange(16, dtype=float).reshape(4, 4)
    assert adaptive_mask(heatmap, 3).sum() == 3 and adaptive_mask(heatmap, 3)[3, 3]
    # Ties at the cut are all kept: a constant map selects every pixel, cIoU = |G| / N.
    gt = np.zeros((4, 4), dtype=bool)
    gt[0, :2] = True
    assert ciou(adaptive_mask(np.ones((4, 4)), 2), gt) == pytest.approx(2 / 16)
    # Half-max: min-max normalised values 0, 1/15, ..., 1; >= 0.5 keeps values 8..15.
    assert half_max_mask(heatmap).sum() == 8
    assert half_max_mask(np.ones((4, 4))).sum() == 0  # a flat map localises nothing


def test_graded_map_f_score_and_iou_by_hand() -> None:
    gt = np.array([[1, 1, 0, 0]], dtype=bool)
    heatmap = np.array([[0.9, 0.2, 0.7, 0.0]])  # normalised 1, 2/9, 7/9, 0
    # >= 0.5 keeps pixels 0 and 2: TP 1, P 1/2, R 1/2 -> F 0.5; IoU 1/3.
    assert f_score(half_max_mask(heatmap), gt) == pytest.approx(0.5)
    assert iou(half_max_mask(heatmap), gt) == pytest.approx(1 / 3)
    # F curve over thresholds t in [0, 1): t = 0 keeps all (P 1/2, R 1: F = 0.65 / 1.15);
    # 0 < t <= 2/9 keeps 0, 1, 2 (P 2/3, R 1: F = 0.8667 / 1.2 = 0.7222); 2/9 < t <= 7/9
    # keeps 0, 2 (F 0.5); t > 7/9 keeps pixel 0 (P 1, R 1/2: F = 0.65 / 0.8 = 0.8125).
    curve = f_score_curve(heatmap, gt)
    assert curve[0] == pytest.approx(0.65 / 1.15)
    assert curve.max() == pytest.approx(0.8125) and curve[-1] == pytest.approx(0.8125)
    assert np.any(np.isclose(curve, 1.3 * (2 / 3) / 1.2))


def test_grid_oracle_on_a_cell_aligned_box() -> None:
    masks = np.zeros((1, 48, 64), dtype=bool)
    masks[0, 12:18, 16:24] = True  # cell (row 2, column 2) of an 8 x 8 grid on 64 x 48 pixels
    oracle = evaluate.grid_oracle_heatmaps(masks, (8, 8))
    assert oracle.shape == (1, 48, 64)
    # Bilinear upsampling is a product of row and column weights: the cell's corner pixels
    # (0.5625 * 0.5833 = 0.33) lose to the pixels just outside the middle of its sides
    # (0.4375 * 0.9167 = 0.40), so even the oracle misses a few corner pixels.
    assert oracle[0, 12, 16] == pytest.approx(0.5625 * (7 / 12))
    assert oracle[0, 15, 15] == pytest.approx(0.4375 * (11 / 12))
    assert 0.8 < ciou(adaptive_mask(oracle[0], int(masks.sum())), masks[0]) < 1.0


def test_ap50_and_auc_by_hand() -> None:
    cious = [0.0, 0.5, 1.0]
    assert ciou_ap(cious) == pytest.approx(2 / 3)
    # success(t): 1 at t = 0, 2/3 for 0 < t <= 0.5, 1/3 for 0.5 < t <= 1 on t = 0, 0.05, .., 1.
    # Trapezoids: 0.05 * (1 + 2/3) / 2 + 9 * 0.05 * 2/3 + 0.05 * (2/3 + 1/3) / 2
    #             + 9 * 0.05 * 1/3 = 0.041667 + 0.3 + 0.025 + 0.15 = 0.516667
    assert ciou_auc(cious) == pytest.approx(0.516667, abs=1e-6)
    assert ciou_auc([1.0, 1.0]) == pytest.approx(1.0)
    summary = summarise(
        [{"ciou": c, "ciou_half_max": c, "iou": c, "fscore": c, "peak_in_sounding": 1.0,
          "peak_on_silent": 0.0} for c in cious],
        [np.array([0.2, 0.6]), np.array([0.4, 0.2])],
    )  # fmt: skip
    assert summary["num_frames"] == 3 and summary["ciou_ap50"] == pytest.approx(2 / 3)
    assert summary["fscore_max"] == pytest.approx(0.4)  # max of the mean curve (0.3, 0.4)


# ------------------------------------------------------------- ground truth and grid frames


def test_ground_truth_keeps_only_sounding_objects() -> None:
    objects = [
        {"sounding": True, "sounding_intervals": [[1.0, 2.0]], "boxes": [[30, 0, 0, 2, 2]]},
        {"sounding": False, "sounding_intervals": [], "boxes": [[30, 4, 4, 6, 6]]},
        # sounding elsewhere in the video, but not at frame 30 (t = 1.2 s)
        {"sounding": True, "sounding_intervals": [[3.0, 4.0]], "boxes": [[30, 0, 4, 1, 6]]},
        {"sounding": True, "sounding_intervals": [[1.0, 2.0]], "boxes": [[31, 6, 0, 8, 2]]},
    ]
    sounding, silent = frame_objects(objects, 30, fps=25.0)
    assert sounding == [[0, 0, 2, 2]]
    assert silent == [[4, 4, 6, 6], [0, 4, 1, 6]]
    mask = boxes_mask(sounding, 8, 8)
    assert mask.sum() == 4 and mask[:2, :2].all()
    # Interval ends are exclusive: at t = 2.0 s (frame 50) the first object is silent.
    assert frame_objects([{**objects[0], "boxes": [[50, 0, 0, 2, 2]]}], 50, 25.0)[0] == []


def test_grid_frames_by_hand() -> None:
    attrs = {"video_id": "v", "window_s": 0.96, "stride_s": 0.32, "config_hash": "h"}
    attrs |= {"audio_present": True, "num_snippets": 2, "fps": 8.0, "video": {"fps": 25.0}}
    attrs["encoders"] = {"visual": {"frames_per_snippet": 4}}
    timestamps = np.array([[0.0, 0.96], [0.32, 1.28]])
    # Middle sampled frame (j = 2): start + 0.96 * 2.5 / 4 = start + 0.6 s -> 0.6 s, 0.92 s;
    # resampled frames floor(4.8) = 4 and floor(7.36) = 7 show 0.5 s and 0.875 s, i.e.
    # source frames floor(12.5) = 12 and floor(21.875) = 21 at 25 fps.
    info = StoreInfo.from_attrs(attrs, where="v.zarr")
    assert grid_frames(info, timestamps).tolist() == [12, 21]
    del attrs["video"]
    with pytest.raises(StoreError, match=r"v\.zarr: attribute 'video\.fps' is missing"):
        grid_frames(StoreInfo.from_attrs(attrs, where="v.zarr"), timestamps)


def test_grid_shows_the_frame_it_is_mapped_to(tiny: dict[str, Path]) -> None:
    snippets = load_split(tiny["index"], tiny["annotations"], "train")
    assert snippets.frame_size == (64, 48) and snippets.video_fps == 10.0
    vid = str(snippets.video_ids[0])
    rows = np.flatnonzero(snippets.video_ids == vid)
    frames = list(iter_frames(snippets.sources[vid], 10.0, (64, 64)))
    for row in rows:
        decoded = frames[snippets.frame_index[row]][None]  # (1, 64, 64, 3)
        mean_rgb = block_mean(decoded, 8, 8)[0] / 255.0  # the classic grid's first 3 values
        assert np.allclose(snippets.grids[row, :, :, :3], mean_rgb, atol=1e-5)


def test_evaluation_frames_follow_the_boxes(tiny: dict[str, Path]) -> None:
    snippets = load_split(tiny["index"], tiny["annotations"], "test")
    boxes = load_boxes(tiny["boxes"])
    frames = evaluation_frames(snippets, boxes)
    expected_rows = [
        row
        for row in range(len(snippets))
        if frame_objects(boxes["videos"][snippets.video_ids[row]], snippets.frame_index[row], 10)[0]
    ]
    assert frames.rows.tolist() == expected_rows and 0 < len(expected_rows) < len(snippets)
    for i, row in enumerate(frames.rows):
        objects = boxes["videos"][snippets.video_ids[row]]
        sounding, silent = frame_objects(objects, int(snippets.frame_index[row]), 10.0)
        assert np.array_equal(frames.masks[i], boxes_mask(sounding, 64, 48))
        assert frames.sounding_boxes[i] == sounding
        assert frames.silent_boxes[i] == silent
    assert frames.has_silent.sum() == sum(bool(s) for s in frames.silent_boxes)
    assert sorted([*frames.rows, *frames.negative_rows]) == list(range(len(snippets)))
    wrong = {**boxes, "width": 128}
    with pytest.raises(ValueError, match=r"boxes\.json describes"):
        evaluation_frames(snippets, wrong)


def test_training_snippets_follow_the_labelled_events(tiny: dict[str, Path]) -> None:
    snippets = load_split(tiny["index"], tiny["annotations"], "train")
    annotations = json.loads(tiny["annotations"].read_text())
    keep = event_snippets(snippets)
    for row in range(len(snippets)):
        events = annotations["database"][snippets.video_ids[row]]["annotations"]
        time_s = snippets.frame_time_s[row]
        inside = [e for e in events if e["segment"][0] <= time_s < e["segment"][1]]
        assert keep[row] == bool(inside)
        assert set(np.flatnonzero(snippets.labels[row])) == {e["label_id"] for e in inside}
    assert 0 < keep.sum() < len(snippets)
    assert snippets.labels.shape[1] == len(snippets.classes)


def test_store_without_grid_is_refused(tiny: dict[str, Path], tmp_path: Path) -> None:
    source = read_store(tiny["index"].parent / "tiny_s0_0000.zarr")
    write_store(
        tmp_path / "tiny_s0_0000.zarr",
        visual=source.visual,
        audio=source.audio,
        timestamps=source.timestamps,
        attrs=source.attrs,
    )
    index = json.loads(tiny["index"].read_text())
    index["videos"] = {"tiny_s0_0000": index["videos"]["tiny_s0_0000"]}
    (tmp_path / "index.json").write_text(json.dumps(index))
    with pytest.raises(StoreError, match="visual_grid"):
        load_split(tmp_path / "index.json", tiny["annotations"], "train")


# ---------------------------------------------------------------------- train -> table


def test_train_evaluate_table_end_to_end(tiny: dict[str, Path], tmp_path: Path) -> None:
    common = ["--index", str(tiny["index"]), "--boxes", str(tiny["boxes"])]
    common += ["--annotations", str(tiny["annotations"])]
    runs = []
    for method, seed in (("m2vsl", 0), ("similarity", 0), ("similarity", 1)):
        run = tmp_path / "spatial" / method / f"seed{seed}"
        settings = {"method": method, "model": {"dim": 16}, "epochs": 2, "batch_size": 8}
        args = [*common, "--settings", json.dumps(settings), "--out", str(run)]
        args += ["--seed", str(seed)]
        assert train.main(args) == 0
        summary = json.loads((run / "train_summary.json").read_text())
        assert summary["method"] == method and summary["num_parameters"] > 0
        assert summary["num_train_snippets"] > 0 and "validation" in summary
        assert len(json.loads((run / "train_log.json").read_text())) == 2
        metrics_args = ["--model", str(run / "model.pt"), *common, "--split", "test"]
        metrics_args += ["--out", str(run / "metrics.json"), "--heatmaps", str(run / "h.png")]
        assert evaluate.main(metrics_args) == 0
        metrics = json.loads((run / "metrics.json").read_text())
        assert metrics["method"] == method and metrics["num_frames"] > 0
        assert metrics["num_frames_with_silent_distractor"] <= metrics["num_frames"]
        assert metrics["grid_oracle"]["ciou_ap50"] >= metrics["overall"]["ciou_ap50"]
        for key in ("ciou_ap50", "ciou_auc", "miou", "fscore", "pointing_accuracy"):
            assert 0.0 <= metrics["overall"][key] <= 1.0
        assert (run / "h.png").read_bytes()[:4] == b"\x89PNG"
        runs.append(run)
    out, merged = tmp_path / "spatial" / "table.md", tmp_path / "spatial" / "metrics.json"
    run_args = ["--runs", *map(str, runs), "--out", str(out), "--json", str(merged)]
    assert table.main(run_args) == 0
    text = out.read_text()
    assert "| M2VSL | 1 |" in text and "| Similarity map (baseline) | 2 |" in text
    assert "| Grid oracle (GT coverage per cell) | - |" in text
    methods = json.loads(merged.read_text())["methods"]
    assert methods["similarity"]["seeds"] == [0, 1] and methods["m2vsl"]["seeds"] == [0]
    seed_values = [
        json.loads((run / "metrics.json").read_text())["overall"]["ciou_auc"] for run in runs[1:]
    ]
    assert methods["similarity"]["mean"]["ciou_auc"] == pytest.approx(np.mean(seed_values))
    assert methods["similarity"]["std"]["ciou_auc"] == pytest.approx(np.std(seed_values, ddof=1))
    assert "M2VSL" in json.loads(merged.read_text())["verdict"]
    model, payload = checkpoint.load_localiser(runs[0] / "model.pt")
    assert payload["train_config"]["model"] == {"dim": 16} and model.grid_shape == (8, 8)
    bad = {"method": "m2vsl", "model": []}
    assert train.main([*common, "--settings", json.dumps(bad), "--out", str(tmp_path)]) == 1
    typo = {"method": "m2vsl", "epoch": 2}
    assert train.main([*common, "--settings", json.dumps(typo), "--out", str(tmp_path)]) == 1
    with pytest.raises(ValueError, match=r"'spatial settings.epoch'; valid keys here: batch_size"):
        train.SpatialTrainConfig.from_settings(typo, seed=0)
    defaults = train.SpatialTrainConfig.from_settings({"method": "similarity"}, seed=3)
    assert (defaults.epochs, defaults.batch_size, defaults.seed) == (10, 64, 3)


def _fake_run(name: str, method: str, seed: int, ciou: float) -> dict:
    overall = {"ciou_ap50": ciou, "ciou_auc": 0.5, "ciou_mean": 0.5, "miou": 0.4, "fscore": 0.5}
    overall["pointing_accuracy"] = 0.9
    return {
        "name": name,
        "method": method,
        "seed": seed,
        "overall": overall,
        "with_silent_distractor": None,
        "throughput_frames_per_s": 100.0,
        "train_cpu_seconds": 2.0,
        "num_parameters": 10,
        "run": f"{name}/seed{seed}",
    }


def test_table_rows_are_runs_and_each_is_compared_with_the_baseline() -> None:
    runs = [
        _fake_run("similarity", "similarity", 0, 0.60),
        _fake_run("similarity", "similarity", 1, 0.62),
        _fake_run("m2vsl", "m2vsl", 0, 0.70),
        _fake_run("m2vsl", "m2vsl", 1, 0.72),
        _fake_run("m2vsl_finest", "m2vsl", 0, 0.50),
        _fake_run("m2vsl_finest", "m2vsl", 1, 0.52),
    ]
    stats = table.aggregate(runs)
    assert list(stats) == ["similarity", "m2vsl", "m2vsl_finest"]
    assert stats["m2vsl"]["mean"]["ciou_ap50"] == pytest.approx(0.71)
    assert stats["m2vsl"]["std"]["ciou_ap50"] == pytest.approx(np.std([0.70, 0.72], ddof=1))
    sentence = table.verdict(stats)
    assert sentence.startswith(
        "M2VSL beats the similarity-map baseline on CIoU (AP50) only (mean ± std over 2 and 2 "
        "seeds, M2VSL first: CIoU (AP50) 0.710 ± 0.014 vs 0.610 ± 0.014;"
    )
    assert "M2VSL (m2vsl_finest) beats the similarity-map baseline on" not in sentence
    assert "M2VSL (m2vsl_finest) does not beat the similarity-map baseline on any" in sentence
    with pytest.raises(ValueError, match="mixes methods"):
        table.aggregate([*runs, _fake_run("m2vsl", "similarity", 2, 0.5)])
