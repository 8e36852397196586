"""Spatial sound localisation: grid frames, ground truth, train -> evaluate -> table (the metrics
are tested in test_metrics.py)."""

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
        assert metrics["num_negatives"] > 0 and metrics["overall"]["num_negatives"] > 0
        overall, oracle = metrics["overall"], metrics["grid_oracle"]
        assert oracle["ours"]["ciou_gt_area"] >= overall["ours"]["ciou_gt_area"]
        assert oracle["slavc"]["ap"] >= overall["slavc"]["ap"]
        for family, key, _ in table.COLUMNS:
            value = overall[family][key]
            assert value is None or 0.0 <= value <= 1.0, (family, key)
        assert overall["slavc"]["precision"] == overall["ezvsl"]["ciou"]
        assert (run / "h.png").read_bytes()[:4] == b"\x89PNG"
        runs.append(run)
    out, merged = tmp_path / "spatial" / "table.md", tmp_path / "spatial" / "metrics.json"
    run_args = ["--runs", *map(str, runs), "--out", str(out), "--json", str(merged)]
    assert table.main(run_args) == 0
    text = out.read_text()
    assert "| M2VSL | 1 |" in text and "| Similarity map (baseline) | 2 |" in text
    assert "| Grid oracle (GT coverage per cell) | - |" in text
    assert "| CIoU (EZ-VSL) | AUC (EZ-VSL) | AP (SLAVC) | max-F1 (SLAVC) |" in text
    assert "| cIoU@\\|GT\\| ≥ 0.5 (ours) |" in text
    methods = json.loads(merged.read_text())["methods"]
    assert methods["similarity"]["seeds"] == [0, 1] and methods["m2vsl"]["seeds"] == [0]
    seed_values = [
        json.loads((run / "metrics.json").read_text())["overall"]["ezvsl"]["auc"]
        for run in runs[1:]
    ]
    similarity = methods["similarity"]
    assert similarity["mean"]["ezvsl"]["auc"] == pytest.approx(np.mean(seed_values))
    assert similarity["std"]["ezvsl"]["auc"] == pytest.approx(np.std(seed_values, ddof=1))
    assert (
        "M2VSL against the similarity-map baseline (one seed: no noise estimate)"
        in (json.loads(merged.read_text())["verdict"])
    )
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


def _fake_run(name: str, method: str, seed: int, ciou: float, ap: float = 0.3) -> dict:
    """A run as pipeline.spatial.table.load_run returns it: CIoU (EZ-VSL) and AP (SLAVC) as
    given, every other metric the same for all runs."""
    overall = {
        "ezvsl": {"ciou": ciou, "auc": 0.5, "mean_ciou": 0.5},
        "slavc": {"ap": ap, "max_f1": 0.4, "precision": ciou},
        "avsbench": {"miou": 0.4, "fscore": 0.5},
        "ours": {
            "ciou_gt_area": 0.6,
            "mean_ciou_gt_area": 0.5,
            "pointing_accuracy": 0.9,
            "peak_on_silent_rate": None,
        },
    }
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
        _fake_run("similarity", "similarity", 0, 0.60, ap=0.30),
        _fake_run("similarity", "similarity", 1, 0.62, ap=0.34),
        _fake_run("m2vsl", "m2vsl", 0, 0.70, ap=0.31),
        _fake_run("m2vsl", "m2vsl", 1, 0.72, ap=0.35),
        _fake_run("m2vsl_finest", "m2vsl", 0, 0.50),
        _fake_run("m2vsl_finest", "m2vsl", 1, 0.52),
        _fake_run("m2vsl_noisy", "m2vsl", 0, 0.55),
        _fake_run("m2vsl_noisy", "m2vsl", 1, 0.75),
        _fake_run("m2vsl_one", "m2vsl", 0, 0.80, ap=0.2),
    ]
    stats = table.aggregate(runs)
    assert list(stats) == ["similarity", "m2vsl", "m2vsl_finest", "m2vsl_noisy", "m2vsl_one"]
    assert stats["m2vsl"]["mean"]["ezvsl"]["ciou"] == pytest.approx(0.71)
    assert stats["m2vsl"]["std"]["ezvsl"]["ciou"] == pytest.approx(np.std([0.70, 0.72], ddof=1))
    assert np.isnan(stats["m2vsl"]["mean"]["ours"]["peak_on_silent_rate"])
    # Welch, CIoU 0.71 vs 0.61, both std 0.01414 over 2 seeds: t = 0.1 / sqrt(0.0002 / 2 +
    # 0.0002 / 2) = 7.071, df = 2, two-sided p = 1 - t / sqrt(t^2 + 2) = 0.0194 < 0.05.
    # AP 0.33 vs 0.32, both std 0.0283: t = 0.01 / 0.0283 = 0.354, df = 2, p = 1 - 0.354 /
    # sqrt(0.125 + 2) = 0.757: within noise. The other metrics are equal (no spread): p = 1.
    compared = table.versus_baseline(stats)
    assert compared["m2vsl"][0]["p_value"] == pytest.approx(0.019419, abs=1e-6)
    findings = [entry["finding"] for entry in compared["m2vsl"]]
    assert findings == ["higher", *["within noise"] * 5]
    sentence = table.verdict(stats)
    assert sentence.startswith(
        "M2VSL beats the similarity-map baseline on CIoU (EZ-VSL) only; is within noise on "
        "AUC (EZ-VSL), AP (SLAVC), max-F1 (SLAVC), mIoU (AVSBench), F-score (AVSBench) "
        "(Welch's t-test, p >= 0.05) (mean ± std over 2 and 2 seeds, M2VSL first: "
        "CIoU (EZ-VSL) 0.710 ± 0.014 vs 0.610 ± 0.014 (p = 0.019); AUC (EZ-VSL) 0.500 ± 0.000 "
        "vs 0.500 ± 0.000 (p = 1.000); AP (SLAVC) 0.330 ± 0.028 vs 0.320 ± 0.028 (p = 0.757);"
    )
    assert "M2VSL (m2vsl_finest) does not beat the similarity-map baseline on any" in sentence
    assert "is beaten on CIoU (EZ-VSL) (mean ± std over 2 and 2 seeds, M2VSL (m2vsl_f" in sentence
    # Noisy: mean 0.65 vs 0.61 is higher, but std 0.141 vs 0.014: se = sqrt(0.01 + 0.0001)
    # = 0.1005, t = 0.398, Welch-Satterthwaite df = 0.0101^2 / (0.01^2 + 0.0001^2) = 1.02:
    # p = 0.758, within noise.
    assert compared["m2vsl_noisy"][0]["finding"] == "within noise"
    assert compared["m2vsl_noisy"][0]["p_value"] == pytest.approx(0.7578, abs=1e-4)
    assert "M2VSL (m2vsl_noisy) does not beat the similarity-map baseline on any headline " in (
        sentence
    )
    assert "CIoU (EZ-VSL) 0.650 ± 0.141 vs 0.610 ± 0.014 (p = 0.758)" in sentence
    # One seed: no test, only which means are higher.
    assert compared["m2vsl_one"][0] == {
        "metric": "ezvsl.ciou",
        "title": "CIoU (EZ-VSL)",
        "difference": pytest.approx(0.19),
        "p_value": None,
        "finding": "one seed: no noise estimate",
    }
    assert (
        "M2VSL (m2vsl_one) against the similarity-map baseline (one seed: no noise estimate): "
        "higher mean on CIoU (EZ-VSL) (mean ± std over 1 and 2 seeds" in sentence
    )
    alone = table.verdict({"m2vsl": stats["m2vsl"]})
    assert alone == "M2VSL has the best CIoU (EZ-VSL), 0.710."
    with pytest.raises(ValueError, match="mixes methods"):
        table.aggregate([*runs, _fake_run("m2vsl", "similarity", 2, 0.5)])
