"""The localisation benchmarks' readers on tiny fakes of their releases, the spatial sets built
from them with the classic encoders, each format end to end to the spatial table, bad input,
and the workflow's DAG for a benchmark config."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import soundfile
import yaml
from PIL import Image

from pipeline.config import (
    ConfigError,
    check_spatial_benchmark,
    spatial_set_settings,
    task_enabled,
    validate_config,
)
from pipeline.encoders import MissingWeightsError
from pipeline.published import PUBLISHED_PATH
from pipeline.spatial import evaluate, sets, table, train
from pipeline.spatial.benchmarks import (
    BenchmarkError,
    BenchmarkSample,
    Release,
    flickr_gt_map,
    read_benchmark,
)
from tests.test_workflow import check_ok, job_counts, snakemake

TINY_M2VSL = {"dim": 8, "hidden": 16, "mmt_heads": 2}
TINY_SIMILARITY = {"dim": 8, "hidden": 16}

# ---------------------------------------------------------------- fakes of the releases


def write_wav(path: Path, seconds: float, rate: int = 16000) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    time_s = np.arange(round(seconds * rate)) / rate
    soundfile.write(path, 0.3 * np.sin(2 * np.pi * 440 * time_s), rate)
    return path


def write_image(path: Path, size: tuple[int, int] = (32, 32), seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path


def write_lines(path: Path, lines: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{line}\n" for line in lines))
    return path


def flickr_xml(boxes: list[list[int]]) -> str:
    """Annotations/<id>.xml: one <bbox> per annotator, its first element not a coordinate."""
    objects = "".join(
        f"<object><bbox><annotator>{n}</annotator><xmin>{x0}</xmin><ymin>{y0}</ymin>"
        f"<xmax>{x1}</xmax><ymax>{y1}</ymax></bbox></object>"
        for n, (x0, y0, x1, y1) in enumerate(boxes)
    )
    return f"<annotation><filename>x.jpg</filename>{objects}</annotation>"


def fake_flickr(root: Path, ids: list[str], train_ids: tuple[str, ...] = ()) -> dict:
    for n, sample_id in enumerate(ids):
        write_image(root / "frames" / f"{sample_id}.jpg", seed=n)
        write_wav(root / "audio" / f"{sample_id}.wav", 1.5, rate=22050)
        xml = flickr_xml([[0, 0, 128, 128], [64, 64, 192, 192]])
        (root / "Annotations").mkdir(exist_ok=True)
        (root / "Annotations" / f"{sample_id}.xml").write_text(xml)
    write_lines(root / "flickr_test.csv", [f"{sample_id},0" for sample_id in ids])
    release = {"format": "flickr_soundnet", "root": str(root)}
    release["test_list"] = str(root / "flickr_test.csv")
    if train_ids:
        train_root = root / "train"
        for n, sample_id in enumerate(train_ids):
            write_image(train_root / "frames" / f"{sample_id}.jpg", seed=10 + n)
            write_wav(train_root / "audio" / f"{sample_id}.wav", 4.0)
        release["train_list"] = str(write_lines(root / "flickr_10k.txt", list(train_ids)))
        release["train_root"] = str(train_root)
    return release


VGGSS_ENTRIES = [
    {"file": "aaa_000010", "class": "dog barking", "bbox": [[0.1, 0.1, 0.5, 0.5]]},
    {"file": "bbb_000020", "class": "playing cello", "bbox": [[-2.8823037615171176e16, 0.5,
                                                               0.25, 1], [0, 0, 1, 1]]},
    {"file": "ccc_000030", "class": "dog barking", "bbox": [[0.5, 1.0, 0.7, 1.0]]},
    {"file": "ddd_000040", "class": "playing cello", "bbox": [[0.2, 0.3, 0.9, 0.8]]},
    {"file": "eee_000050", "class": "dog barking", "bbox": [[0.0, 0.0, 0.5, 1]]},
]  # fmt: skip


def fake_vggss(root: Path, entries: list[dict] = VGGSS_ENTRIES) -> dict:
    for n, entry in enumerate(entries):
        write_image(root / "frames" / f"{entry['file']}.jpg", seed=n)
        write_wav(root / "audio" / f"{entry['file']}.wav", 1.2 + 0.2 * n)
    (root / "vggss.json").write_text(json.dumps(entries))
    write_lines(root / "vggss_test.csv", [entry["file"] for entry in entries])
    return {"format": "vggss", "root": str(root), "test_list": str(root / "vggss_test.csv")}


def fake_vgginstruments(root: Path) -> dict:
    classes = ["accordion", "cello", "accordion", "flute"]
    for n in range(len(classes)):
        sample_id = f"sample{n:04d}"
        write_image(root / "frames" / f"{sample_id}.jpg", seed=n)
        write_wav(root / "audio" / f"{sample_id}.wav", 2.0)
        mask = np.zeros((10, 20), dtype=np.uint8)
        mask[2:6, 5 + n : 15] = 1
        (root / "anno").mkdir(exist_ok=True)
        (root / "anno" / f"{sample_id}.pkl").write_bytes(pickle.dumps(mask))
    write_lines(root / "test.csv", [f"sample{n:04d},{label}" for n, label in enumerate(classes)])
    train_ids = ["yt-aaa_000010", "yt-bbb_000030", "yt-ccc_000000"]
    for n, sample_id in enumerate(train_ids):
        write_image(root / "train" / "frames" / f"{sample_id}.jpg", seed=20 + n)
        write_wav(root / "train" / "audio" / f"{sample_id}.wav", 3.0)
    train_classes = ["accordion", "trumpet", "cello"]
    write_lines(
        root / "train.txt", [f"{i},{c}" for i, c in zip(train_ids, train_classes, strict=True)]
    )
    return {
        "format": "vgginstruments",
        "root": str(root),
        "test_list": str(root / "test.csv"),
        "train_list": str(root / "train.txt"),
        "train_root": str(root / "train"),
    }


AVSBENCH_CLIPS = [  # name, category, split
    ("clipTrain1", "dog", "train"),
    ("clipTrain2", "guitar", "train"),
    ("clipVal1", "dog", "val"),
    ("clipTest1", "guitar", "test"),
    ("clipTest2", "dog", "test"),
]


def fake_avsbench(root: Path, clips: list[tuple[str, str, str]] = AVSBENCH_CLIPS) -> dict:
    rows = ["name,start_time,category,split"]
    for n, (name, category, split) in enumerate(clips):
        rows.append(f"{name},0,{category},{split}")
        folder = Path(split) / category / name
        for k in range(1, 6):
            write_image(root / "visual_frames" / folder / f"{name}_{k}.png", (224, 224), n + k)
            if split != "train" or k == 1:  # the release: train clips have only mask _1
                mask = np.zeros((224, 224), dtype=np.uint8)
                mask[20 * k : 100 + 20 * k, 50:150] = 255
                path = root / "gt_masks" / folder / f"{name}_{k}.png"
                path.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(mask).save(path)
        write_wav(root / "audio_wav" / Path(split) / category / f"{name}.wav", 5.0)
    write_lines(root / "s4_meta_data.csv", rows)
    return {"format": "avsbench_s4", "root": str(root)}


def read(release: dict, on_error: str = "fail"):
    return read_benchmark(Release.from_settings(release), min_audio_s=0.96, on_error=on_error)


# ---------------------------------------------------------------- readers, by hand


def test_flickr_two_annotators_give_the_soft_consensus_map(tmp_path: Path) -> None:
    result = read(fake_flickr(tmp_path, ["10000130166", "2"]))
    sample = result.samples[0]
    # 256-px boxes [0, 0, 128, 128] and [64, 64, 192, 192] -> int(224 v / 256): 112, 56, 168
    assert sample.boxes == ((0, 0, 112, 112), (56, 56, 168, 168))
    gt = sample.gt_map
    assert gt.shape == (224, 224) and gt.dtype == np.float32
    assert gt[60, 60] == 1.0 and gt[10, 10] == 0.5 and gt[150, 150] == 0.5 and gt[200, 10] == 0
    assert gt[111, 111] == 1.0 and gt[112, 112] == 0.5 and gt[167, 167] == 0.5
    assert gt[168, 168] == 0.0  # x1, y1 exclusive
    # 0.5 on the two boxes, 1 where they overlap: 0.5 (2 * 112^2 - 2 * 56^2) + 56^2
    assert gt.sum() == pytest.approx(0.5 * (2 * 112**2 - 2 * 56**2) + 56**2)
    assert sample.classes == () and sample.split == "test"
    # the 1.5 s clip is shorter than EZ-VSL's 3 s window: all of it
    assert (sample.audio_start_s, sample.audio_end_s) == (0.0, 1.5)
    assert int(224 * 100 / 256) == 87  # the anchor's truncation
    assert flickr_gt_map([(0, 0, 87, 10)]).sum() == 0.5 * 87 * 10


def test_vggss_sentinels_int_values_and_boxes_emptied_by_clipping(tmp_path: Path) -> None:
    result = read(fake_vggss(tmp_path))
    by_id = {sample.sample_id: sample for sample in result.samples}
    # the sentinel is clipped to 0 as EZ-VSL clips; [0.25, 1] -> 56, 224; JSON ints work
    assert by_id["bbb_000020"].boxes == ((0, 112, 56, 224), (0, 0, 224, 224))
    assert by_id["bbb_000020"].gt_map.min() == 1.0  # union of the boxes, binary
    assert by_id["aaa_000010"].boxes == ((22, 22, 112, 112),)
    assert by_id["aaa_000010"].gt_map.sum() == 90 * 90
    assert by_id["aaa_000010"].classes == ("dog barking",)
    # y1 = y2 = 1.0: no pixel left; left out of the test split and listed, not an error
    assert "ccc_000030" not in by_id
    assert [p.sample_id for p in result.excluded] == ["ccc_000030"]
    warned = {p.sample_id: p.reason for p in result.warnings}
    assert "1 value(s) outside [0, 1] clipped" in warned["bbb_000020"]
    assert "empty after clipping" in warned["ccc_000030"]
    # EZ-VSL's centred 3 s: a 2.0 s clip whole; clip 4 lasts 2.0 s, clip 5 2.2 s
    assert (by_id["eee_000050"].audio_start_s, by_id["eee_000050"].audio_end_s) == (0.0, 2.0)


def test_centred_audio_window_of_a_long_clip(tmp_path: Path) -> None:
    release = fake_flickr(tmp_path, ["1"])
    write_wav(tmp_path / "audio" / "1.wav", 10.0)
    sample = read(release).samples[0]
    assert (sample.audio_start_s, sample.audio_end_s) == (3.5, 6.5)


def test_vgginstruments_masks_resized_nearest_as_cv2(tmp_path: Path) -> None:
    result = read(fake_vgginstruments(tmp_path))
    test = [s for s in result.samples if s.split == "test"]
    mask = np.zeros((10, 20), dtype=np.float32)
    mask[2:6, 5:15] = 1
    rows, cols = (np.arange(224) * 10) // 224, (np.arange(224) * 20) // 224  # floor(i * h / 224)
    assert np.array_equal(test[0].gt_map, mask[rows[:, None], cols[None, :]])
    assert test[0].gt_map[int(np.ceil(2 * 22.4)), 60] == 1 and test[0].gt_map[44, 60] == 0
    assert test[0].classes == ("accordion",) and test[0].boxes == ()
    train_samples = [s for s in result.samples if s.split == "train"]
    assert [s.sample_id for s in train_samples] == [
        "yt-aaa_000010",
        "yt-bbb_000030",
        "yt-ccc_000000",
    ]
    assert train_samples[1].classes == ("trumpet",) and train_samples[1].gt_map is None
    assert train_samples[0].image_path == tmp_path / "train" / "frames" / "yt-aaa_000010.jpg"


def test_a_mask_pickle_that_is_not_an_array_is_refused_without_running_it(
    tmp_path: Path,
) -> None:
    release = fake_vgginstruments(tmp_path)
    marker = tmp_path / "made_by_the_pickle"

    class Payload:
        def __reduce__(self):
            return (os.mkdir, (str(marker),))

    (tmp_path / "anno" / "sample0001.pkl").write_bytes(pickle.dumps(Payload()))
    (tmp_path / "anno" / "sample0002.pkl").write_bytes(pickle.dumps({"mask": [1, 2]}))
    with pytest.raises(BenchmarkError) as caught:
        read(release)
    message = str(caught.value)
    assert "test sample sample0001" in message and "sample0001.pkl" in message
    assert "refusing to load" in message and "mkdir" in message
    assert "test sample sample0002" in message and "not a 2-D numpy array" in message
    assert not marker.exists()


def test_avsbench_frames_seconds_and_train_masks(tmp_path: Path) -> None:
    result = read(fake_avsbench(tmp_path))
    by_split: dict[str, list] = {}
    for sample in result.samples:
        by_split.setdefault(sample.split, []).append(sample)
    assert {split: len(s) for split, s in by_split.items()} == {
        "train": 10,
        "validation": 5,
        "test": 10,
    }
    third = next(s for s in by_split["test"] if s.sample_id == "clipTest1_3")
    assert (third.audio_start_s, third.audio_end_s) == (2.0, 3.0) and third.clip_frame == 2
    assert third.classes == ("guitar",)
    assert third.image_path.name == "clipTest1_3.png"
    assert third.gt_map.sum() == 100 * 100 and third.gt_map[60, 60] == 1.0
    assert third.gt_map[59, 60] == 0.0  # rows 60..159 for k = 3
    # train clips have only mask _1: their frames 2..5 are fine and no training mask is read
    assert all(s.gt_map is None for s in by_split["train"])
    assert not (tmp_path / "gt_masks/train/dog/clipTrain1/clipTrain1_2.png").exists()


# ---------------------------------------------------------------- bad input


def test_a_frame_without_audio_names_the_file_and_the_sample(tmp_path: Path) -> None:
    release = fake_flickr(tmp_path, ["11", "12", "13"])
    (tmp_path / "audio" / "12.wav").unlink()
    with pytest.raises(BenchmarkError, match=r"test sample 12: .*12\.wav: the audio file does not"):
        read(release)
    kept = read(release, on_error="skip")
    assert [s.sample_id for s in kept.samples] == ["11", "13"]
    assert [(p.sample_id, Path(p.path).name) for p in kept.skipped] == [("12", "12.wav")]


def test_bad_boxes_masks_short_audio_and_missing_annotations(tmp_path: Path) -> None:
    flickr = fake_flickr(tmp_path / "flickr", ["21", "22"])
    (tmp_path / "flickr" / "Annotations" / "22.xml").write_text(flickr_xml([[0, 0, 300, 40]]))
    with pytest.raises(BenchmarkError, match=r"test sample 22: .*22\.xml: box \[0, 0, 300, 40\]"):
        read(flickr)
    (tmp_path / "flickr" / "Annotations" / "22.xml").unlink()
    with pytest.raises(BenchmarkError, match=r"sample 22: .*22\.xml: no annotation file"):
        read(flickr)
    vggss = fake_vggss(tmp_path / "vggss", VGGSS_ENTRIES[:2])
    write_lines(tmp_path / "vggss" / "vggss_test.csv", ["aaa_000010", "zzz_000000"])
    with pytest.raises(BenchmarkError, match=r"sample zzz_000000: .*vggss\.json: the sample has"):
        read(vggss)
    write_wav(tmp_path / "vggss" / "audio" / "aaa_000010.wav", 0.5)
    with pytest.raises(
        BenchmarkError, match=r"aaa_000010: .*aaa_000010\.wav: the audio lasts 0.500"
    ):
        read(vggss, on_error="fail")
    avsbench = fake_avsbench(tmp_path / "avs", AVSBENCH_CLIPS[3:4])
    mask = tmp_path / "avs" / "gt_masks/test/guitar/clipTest1/clipTest1_4.png"
    Image.fromarray(np.zeros((100, 224), dtype=np.uint8)).save(mask)
    write_wav(tmp_path / "avs" / "audio_wav/test/guitar/clipTest1.wav", 4.5)
    with pytest.raises(BenchmarkError) as caught:
        read(avsbench)
    message = str(caught.value)
    assert "test sample clipTest1_4" in message and "the mask is 224x100, not 224x224" in message
    assert "test sample clipTest1_5" in message and "[4, 5] holds less than" in message
    assert "extraction.on_error: skip" in message


def test_bad_samples_fail_before_any_encoding_and_skip_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    release = fake_vggss(tmp_path / "release", VGGSS_ENTRIES[:3])
    (tmp_path / "release" / "frames" / "bbb_000020.jpg").write_bytes(b"not a jpeg")
    config = benchmark_config(release)

    def no_encoding(*args, **kwargs):
        raise AssertionError("encoded before the release was checked")

    monkeypatch.setattr(sets, "encode_grids", no_encoding)
    out = tmp_path / "set"
    with pytest.raises(BenchmarkError, match=r"test sample bbb_000020: .*bbb_000020\.jpg: unread"):
        sets.build_set(sets.SetSettings.from_settings(spatial_set_settings(config)), out)
    assert not out.exists()
    monkeypatch.undo()
    config["extraction"]["on_error"] = "skip"
    report = sets.build_set(sets.SetSettings.from_settings(spatial_set_settings(config)), out)
    assert report["num_samples"] == {"test": 1}
    assert [p["sample_id"] for p in report["skipped"]] == ["bbb_000020"]
    assert [p["sample_id"] for p in report["excluded"]] == ["ccc_000030"]
    assert json.loads((out / "report.json").read_text())["skipped"][0]["path"].endswith(".jpg")
    snippets, frames = sets.load_set(out / "test.npz")
    assert snippets.video_ids.tolist() == ["aaa_000010"] and len(frames.rows) == 1


def test_missing_weights_fail_before_the_release_is_read(tmp_path: Path) -> None:
    settings = {
        "release": {"format": "vggss", "root": str(tmp_path / "absent")},
        "extraction": {
            "visual": {"name": "classic"},
            "audio": {
                "name": "clap",
                "model": "laion/clap-htsat-unfused",
                "cache_dir": str(tmp_path),
            },
            "window_s": 0.96,
            "stride_s": 0.32,
        },
    }
    with pytest.raises(MissingWeightsError, match="clap model 'laion/clap-htsat-unfused' is not"):
        sets.build_set(sets.SetSettings.from_settings(settings), tmp_path / "set")
    clip = {"name": "clip", "model": "ViT-B-16", "weights_path": str(tmp_path / "no.bin")}
    clip["cache_dir"] = str(tmp_path)
    with pytest.raises(MissingWeightsError, match=r"CLIP model ViT-B-16: weights_path .*no\.bin"):
        sets.check_encoder_weights(clip, {"name": "classic"})


# ---------------------------------------------------------------- config and sets


def benchmark_config(release: dict, **extraction) -> dict:
    return validate_config(
        {
            "dataset": {"name": "bench", "source": "import", "import": release},
            "extraction": {"batch_size": 4, "device": "cpu", **extraction},
        }
    )


def test_a_benchmark_config_runs_only_the_spatial_stage(tmp_path: Path) -> None:
    release = {"format": "vggss", "root": str(tmp_path / "absent")}
    config = benchmark_config(release)  # paths are checked when the DAG is built, not here
    assert task_enabled(config, "spatial") and not task_enabled(config, "segments")
    with pytest.raises(
        ConfigError, match=r"'dataset.import.root': the vggss release's folder .*absent does not"
    ):
        check_spatial_benchmark(config, "my.yaml")
    with pytest.raises(ConfigError, match=r"'dataset\.import\.root' must be set"):
        benchmark_config({"format": "avsbench_s4"})
    with pytest.raises(ConfigError, match=r"'dataset\.import\.features_dir' is not read"):
        benchmark_config({**release, "features_dir": "x"})
    with pytest.raises(ConfigError, match=r"'spatial\.enabled' is false"):
        validate_config(
            {
                "dataset": {"name": "b", "source": "import", "import": release},
                "spatial": {"enabled": False},
            }
        )
    with pytest.raises(ConfigError, match=r"needs dataset\.import\.test_list"):
        check_spatial_benchmark(benchmark_config({"format": "vgginstruments", "root": "/x"}))


def test_the_set_holds_what_the_stages_read(tmp_path: Path) -> None:
    config = benchmark_config(fake_vgginstruments(tmp_path / "release"))
    out = tmp_path / "set"
    sets.build_set(sets.SetSettings.from_settings(spatial_set_settings(config)), out)
    assert sorted(p.name for p in out.iterdir()) == ["report.json", "test.npz", "train.npz"]
    snippets, frames = sets.load_set(out / "test.npz")
    assert snippets.grids.shape == (4, 8, 8, 12) and snippets.grids.dtype == np.float32
    assert snippets.audio.shape == (4, 140) and snippets.frame_size == (224, 224)
    assert snippets.video_fps == 1.0 and snippets.frame_index.tolist() == [0, 0, 0, 0]
    assert snippets.classes == ("accordion", "cello", "flute", "trumpet")
    assert snippets.labels.tolist()[1] == [0, 1, 0, 0]
    assert snippets.sources["sample0003"].endswith("frames/sample0003.jpg")
    assert frames.rows.tolist() == [0, 1, 2, 3] and frames.masks.shape == (4, 224, 224)
    assert frames.sounding_boxes == [[], [], [], []] and len(frames.negative_rows) == 0
    train_snippets, train_frames = sets.load_set(out / "train.npz")
    assert train_frames is None and train_snippets.labels.sum(axis=0).tolist() == [1, 1, 0, 1]
    # the grid is the classic encoder's on the 224 frame resized to its 64x64, as a 1-frame clip
    encoder = sets.build_visual_encoder({"name": "classic"}, device="cpu")
    image = sets.load_image(snippets.sources["sample0000"], encoder.frame_size)
    assert np.allclose(snippets.grids[0], encoder.encode_grid(image[None, None])[0])
    report = json.loads((out / "report.json").read_text())
    assert report["num_samples"] == {"test": 4, "train": 3}
    assert report["encoders"]["visual"]["name"] == "classic"


def test_audio_rows_are_window_means_embedded_a_batch_at_a_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each sample's row is the mean of its windows' embeddings; the windows go to the encoder
    in batches of ``batch_size`` as the files are read, never all of a split at once."""
    events: list[str] = []
    read_audio = sets.read_audio

    def recorded_read(path: Path, sample_rate: int) -> np.ndarray:
        events.append(f"read {path.name}")
        return read_audio(path, sample_rate)

    monkeypatch.setattr(sets, "read_audio", recorded_read)
    rate = 1000
    wavs = [write_wav(tmp_path / f"{k}.wav", seconds, rate) for k, seconds in enumerate((3, 2))]
    image = write_image(tmp_path / "frame.jpg")
    windows_of = {0: (0.0, 3.0), 1: (0.5, 2.0), 2: (0.0, 2.0)}  # row: audio seconds
    samples = [
        BenchmarkSample(f"s{row}", "test", image, wavs[min(row, 1)], start, end)
        for row, (start, end) in windows_of.items()
    ]

    class FirstSample:
        """Embeds a window as its first sample and its length; records the batch sizes."""

        sample_rate, dim = rate, 2

        def __init__(self) -> None:
            self.batches: list[int] = []

        def encode(self, windows: np.ndarray) -> np.ndarray:
            self.batches.append(len(windows))
            events.append("encode")
            return np.stack([windows[:, 0], np.full(len(windows), windows.shape[1])], axis=1)

    encoder = FirstSample()
    rows = sets.encode_audio(samples, encoder, window_s=0.96, stride_s=0.32, batch_size=4)
    # 7, 2 and 4 windows of 960 samples (snippet_grid of 3.0, 1.5 and 2.0 s), in batches of 4
    assert encoder.batches == [4, 4, 4, 1]
    assert events == ["read 0.wav", "encode", "read 1.wav", "encode", "encode", "encode"]
    expected = []
    for row, (start, end) in windows_of.items():
        waveform = read_audio(samples[row].audio_path, rate)
        part = waveform[round(start * rate) : round(end * rate)]
        count = int((len(part) / rate - 0.96) // 0.32 + 1e-9) + 1
        firsts = [part[round(k * 0.32 * rate)] for k in range(count)]
        expected.append([np.mean(firsts), 960])
    np.testing.assert_allclose(rows, expected, rtol=1e-6)
    assert rows.dtype == np.float32


# ---------------------------------------------------------------- end to end, per format


def end_to_end(
    tmp_path: Path, release: dict, runs: dict[str, tuple[str, dict]], heatmaps: bool = False
) -> dict:
    """Set -> train -> evaluate -> table through the stages' command lines; the merged JSON.
    With ``heatmaps``, the figure too (drawn on the images)."""
    config = benchmark_config(release)
    set_dir = tmp_path / "set"
    assert (
        sets.main(["--settings", json.dumps(spatial_set_settings(config)), "--out", str(set_dir)])
        == 0
    )
    run_dirs = []
    for name, (method, model) in runs.items():
        run = tmp_path / "spatial" / name / "seed0"
        settings = {"method": method, "model": model, "epochs": 1, "batch_size": 2}
        args = ["--set", str(set_dir), "--settings", json.dumps(settings), "--name", name]
        assert train.main([*args, "--out", str(run)]) == 0
        args = ["--model", str(run / "model.pt"), "--set", str(set_dir), "--split", "test"]
        args += ["--out", str(run / "metrics.json")]
        if heatmaps:
            args += ["--heatmaps", str(run / "heatmaps.png")]
        assert evaluate.main(args) == 0
        assert not heatmaps or (run / "heatmaps.png").read_bytes()[:4] == b"\x89PNG"
        run_dirs.append(run)
    out = tmp_path / "spatial" / "table.md"
    args = ["--runs", *map(str, run_dirs), "--out", str(out)]
    assert table.main([*args, "--json", str(tmp_path / "merged.json"), "--title", "bench"]) == 0
    assert "Visual sound localisation: bench" in out.read_text()
    merged = json.loads((tmp_path / "merged.json").read_text())
    merged["summaries"] = [json.loads((r / "train_summary.json").read_text()) for r in run_dirs]
    return merged


def test_flickr_end_to_end_without_class_labels(tmp_path: Path) -> None:
    release = fake_flickr(tmp_path / "release", ["31", "32", "33"], train_ids=("t1", "t2", "t3"))
    merged = end_to_end(
        tmp_path,
        release,
        {
            "similarity": ("similarity", TINY_SIMILARITY),
            "m2vsl": ("m2vsl", {**TINY_M2VSL, "mmt": False}),
        },
        heatmaps=True,
    )
    assert merged["num_frames"] == 3 and set(merged["methods"]) == {"similarity", "m2vsl"}
    assert all(
        s["train_split"] == "train" and s["num_train_snippets"] == 3 for s in merged["summaries"]
    )


def test_vggss_end_to_end_trains_on_the_test_pairs_without_a_list(tmp_path: Path) -> None:
    merged = end_to_end(
        tmp_path, fake_vggss(tmp_path / "release"), {"m2vsl": ("m2vsl", TINY_M2VSL)}
    )
    assert merged["num_frames"] == 4  # ccc_000030 excluded
    summary = merged["summaries"][0]
    assert summary["train_split"].startswith("test (no training list")
    assert summary["num_train_snippets"] == 4


def test_vggsound_single_end_to_end_classes_from_its_list(tmp_path: Path) -> None:
    release = fake_vggss(tmp_path / "release", VGGSS_ENTRIES[:2] + VGGSS_ENTRIES[3:])
    single = tmp_path / "release" / "vggsound_single_test.csv"
    write_lines(single, ["aaa_000010,dog_barking", "bbb_000020,playing_cello",
                         "ddd_000040,playing_cello", "eee_000050,dog_barking"])  # fmt: skip
    release.update(format="vggsound_single", test_list=str(single))
    merged = end_to_end(tmp_path, release, {"m2vsl": ("m2vsl", TINY_M2VSL)})
    snippets, _ = sets.load_set(tmp_path / "set" / "test.npz")
    assert snippets.classes == ("dog_barking", "playing_cello") and merged["num_frames"] == 4


def test_vgginstruments_end_to_end(tmp_path: Path) -> None:
    merged = end_to_end(
        tmp_path, fake_vgginstruments(tmp_path / "release"), {"m2vsl": ("m2vsl", TINY_M2VSL)}
    )
    assert merged["num_frames"] == 4
    assert merged["summaries"][0]["num_train_snippets"] == 3


def test_avsbench_end_to_end_with_validation(tmp_path: Path) -> None:
    release = fake_avsbench(tmp_path / "release", AVSBENCH_CLIPS[::2])
    merged = end_to_end(tmp_path, release, {"m2vsl": ("m2vsl", TINY_M2VSL)}, heatmaps=True)
    assert merged["num_frames"] == 5  # 1 test clip x 5 frames
    summary = merged["summaries"][0]
    assert summary["num_train_snippets"] == 5 and summary["validation"]["num_frames"] == 5


# ---------------------------------------------------------------- the workflow's DAG


def test_dry_run_builds_the_dag_of_a_benchmark_config(tmp_path: Path) -> None:
    release = fake_avsbench(tmp_path / "release", AVSBENCH_CLIPS[:1] + AVSBENCH_CLIPS[3:4])
    config = {
        "dataset": {"name": "avs", "source": "import", "import": release},
        "spatial": {"seeds": [0, 1]},
    }
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    output = check_ok(snakemake(tmp_path, "-n", "--printshellcmds", timeout=120))
    jobs = job_counts(output)
    expected = {"spatial_set": 1, "spatial_train": 4, "spatial_evaluate": 4, "spatial_table": 1}
    assert jobs == {**expected, "all": 1}, jobs
    # the table gets the published rows of the import format's benchmark
    (table_command,) = [line for line in output.splitlines() if "pipeline.spatial.table" in line]
    assert f"--published avsbench_s4 --published-results {PUBLISHED_PATH}" in table_command
