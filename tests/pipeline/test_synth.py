"""Tests of the synthetic audio-visual benchmark generator (pipeline.synth)."""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import shutil
from pathlib import Path

import av
import jsonschema
import numpy as np
import pytest

from pipeline.synth import (
    ANNOTATIONS_SCHEMA,
    SIZES,
    Appearance,
    Clutter,
    Motion,
    VideoPlan,
    generate,
    is_rendered,
    labelled_segments,
    make_classes,
    object_box,
    plan_dataset,
    render_video,
    sounding_intervals,
    video_ids,
    write_ground_truth,
)
from pipeline.synth.__main__ import main
from pipeline.synth.ground_truth import segment_rows
from pipeline.synth.planner import assign_subsets, plan_video
from pipeline.synth.shapes import shape_alpha

SEED = 3


# ---------------------------------------------------------------- helpers


def _hand_plan(appearances: list[Appearance], classes=None, video_id="hand_0000") -> VideoPlan:
    """A 3-s, 96x64, 10-fps plan with the given appearances and one grey clutter square."""
    return VideoPlan(
        video_id=video_id,
        index=0,
        subset="test",
        size_name="tiny",
        seed=0,
        num_frames=30,
        width=96,
        height=64,
        fps=10,
        sample_rate=16000,
        classes=classes or make_classes(10),
        appearances=tuple(appearances),
        clutter=(Clutter(shape="square", grey=60, motion=Motion(5, 2.0, 50.0, 3.0, 0.0)),),
        background_seed=7,
        background_drift_px_s=(2.0, 1.0),
    )


# red_circle_tone: seen 1.0-2.5 s, heard 0.8-2.2 s -> labelled 1.0-2.2 s.
EVENT = Appearance(
    label_id=0,
    role="event",
    visible_s=(1.0, 2.5),
    audible_s=(0.8, 2.2),
    motion=Motion(size_px=22, x_px=8.0, y_px=6.0, vx_px_s=6.0, vy_px_s=3.0),
    gain=1.0,
    sound_seed=11,
)
# green_square_chord seen for the whole video, never heard.
SILENT = Appearance(
    label_id=1,
    role="silent_object",
    visible_s=(0.0, 3.0),
    audible_s=None,
    motion=Motion(size_px=18, x_px=66.0, y_px=36.0, vx_px_s=-4.0, vy_px_s=0.0),
    gain=1.0,
    sound_seed=12,
)
# yellow_diamond_pulses heard 2.4-3.0 s, never seen.
OFFSCREEN = Appearance(
    label_id=3,
    role="offscreen_sound",
    visible_s=None,
    audible_s=(2.4, 3.0),
    motion=None,
    gain=1.0,
    sound_seed=13,
)


def _decode_video(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]


def _decode_audio(path: Path) -> np.ndarray:
    with av.open(str(path)) as container:
        return np.concatenate([frame.to_ndarray()[0] for frame in container.decode(audio=0)])


def _tone_amplitude(audio: np.ndarray, rate: int, start_s: float, end_s: float, hz: float) -> float:
    """Amplitude spectrum at ``hz`` of a Hann-windowed stretch of audio."""
    window = audio[round(start_s * rate) : round(end_s * rate)]
    spectrum = np.abs(np.fft.rfft(window * np.hanning(len(window))))
    frequencies = np.fft.rfftfreq(len(window), 1 / rate)
    near = np.abs(frequencies - hz) <= 8.0
    return float(spectrum[near].max())


def _near_colour(image: np.ndarray, rgb: tuple[int, int, int], tolerance: int) -> np.ndarray:
    """Mask (H, W) of pixels whose every channel is within ``tolerance`` of ``rgb``."""
    return (np.abs(image.astype(int) - np.array(rgb)) <= tolerance).all(axis=2)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny data set, generated once for the module."""
    out_dir = tmp_path_factory.mktemp("tiny")
    generate(out_dir, "tiny", SEED, num_classes=10)
    return out_dir


@pytest.fixture(scope="module")
def hand_video(tmp_path_factory: pytest.TempPathFactory) -> tuple[VideoPlan, Path]:
    """The hand-made plan with one event and two distractors, rendered."""
    plan = _hand_plan([EVENT, SILENT, OFFSCREEN])
    path = tmp_path_factory.mktemp("hand") / "hand_0000.mp4"
    render_video(plan, path)
    return plan, path


# ---------------------------------------------------------------- ids, sizes, errors


def test_video_ids_are_stable() -> None:
    assert video_ids("tiny", 0) == [f"tiny_s0_000{i}" for i in range(6)]
    assert video_ids("demo", 7)[42] == "demo_s7_0042"
    assert len(video_ids("demo", 0)) == SIZES["demo"].num_videos == 150
    assert len(video_ids("bench", 0)) == SIZES["bench"].num_videos == 400
    assert [plan.video_id for plan in plan_dataset("tiny", SEED, 4)] == video_ids("tiny", SEED)


def test_sizes_are_encodable() -> None:
    for size in SIZES.values():
        assert size.width % 2 == 0 and size.height % 2 == 0
        assert size.sample_rate % size.fps == 0
        assert sum(size.split_counts()) == size.num_videos
    assert SIZES["demo"].split_counts() == (100, 25, 25)
    assert SIZES["tiny"].split_counts() == (3, 1, 2)


def test_unknown_size_names_valid_ones(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"'huge'.*tiny, demo, bench"):
        video_ids("huge", 0)
    with pytest.raises(ValueError, match="huge"):
        plan_dataset("huge", 0, 10)
    with pytest.raises(ValueError, match="huge"):
        generate(tmp_path, "huge", 0, 10)
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("num_classes", [1, 21, 0, -3])
def test_num_classes_out_of_range(tmp_path: Path, num_classes: int) -> None:
    with pytest.raises(ValueError, match="num_classes must be between 2 and 20"):
        plan_dataset("tiny", 0, num_classes)
    with pytest.raises(ValueError, match="num_classes"):
        generate(tmp_path, "tiny", 0, num_classes)


def test_classes_are_distinct() -> None:
    classes = make_classes(20)
    for field in ("label", "rgb", "shape", "frequency_hz"):
        assert len({getattr(spec, field) for spec in classes}) == 20, field
    assert classes[0].label == "red_circle_tone"
    assert [spec.label_id for spec in classes] == list(range(20))
    assert make_classes(2)[1].frequency_hz == 4000.0


# ---------------------------------------------------------------- planning


def test_plans_are_deterministic_and_per_video() -> None:
    plans = plan_dataset("tiny", SEED, 10)
    assert plans == plan_dataset("tiny", SEED, 10)
    assert [p.plan_hash() for p in plans] == [p.plan_hash() for p in plan_dataset("tiny", SEED, 10)]
    assert plans != plan_dataset("tiny", SEED + 1, 10)
    # A video's plan depends only on (seed, index): planning it alone gives the same plan.
    subset, first_label_id = assign_subsets("tiny", SEED, 10)[4]
    alone = plan_video("tiny", SEED, 4, subset, first_label_id, make_classes(10))
    assert alone == plans[4]
    # The duration is drawn before anything class-dependent.
    assert [p.num_frames for p in plan_dataset("tiny", SEED, 3)] == [p.num_frames for p in plans]


def test_tiny_videos_have_events_and_distractors() -> None:
    size = SIZES["tiny"]
    plans = plan_dataset("tiny", SEED, 10)
    roles = [a.role for p in plans for a in p.appearances]
    assert "silent_object" in roles and "offscreen_sound" in roles
    for plan in plans:
        assert labelled_segments(plan), plan.video_id
        assert any(a.role != "event" for a in plan.appearances), plan.video_id
        assert size.min_duration_s - 0.1 <= plan.duration_s <= size.max_duration_s + 0.1
        assert (plan.width, plan.height, plan.fps) == (64, 48, 10)
        assert len(plan.clutter) >= 3
    assert sorted(p.subset for p in plans) == sorted(["train"] * 3 + ["validation"] + ["test"] * 2)


def test_demo_plans_need_both_modalities() -> None:
    plans = plan_dataset("demo", 0, 10)
    # Every class has a labelled event in every subset.
    for subset in ("train", "validation", "test"):
        labels = {seg[0] for p in plans if p.subset == subset for seg in labelled_segments(p)}
        assert labels == set(range(10)), subset
    # Distractors are about as frequent as events and present in most videos.
    counts = {role: 0 for role in ("event", "silent_object", "offscreen_sound")}
    for plan in plans:
        for appearance in plan.appearances:
            counts[appearance.role] += 1
    assert 0.75 < counts["silent_object"] / counts["event"] < 1.33
    assert 0.75 < counts["offscreen_sound"] / counts["event"] < 1.33
    assert sum(any(a.role != "event" for a in p.appearances) for p in plans) >= 0.8 * len(plans)
    # Seeing an object, or hearing a sound, is labelled only about half of the time.
    visible = sum(
        a.visible_s[1] - a.visible_s[0] for p in plans for a in p.appearances if a.visible_s
    )
    audible = sum(
        a.audible_s[1] - a.audible_s[0] for p in plans for a in p.appearances if a.audible_s
    )
    labelled = sum(end - start for p in plans for _, start, end in labelled_segments(p))
    assert 0.35 < labelled / visible < 0.65
    assert 0.35 < labelled / audible < 0.65
    # Durations span short to whole-video; some sounds start or end apart from the object.
    lengths = [end - start for p in plans for _, start, end in labelled_segments(p)]
    assert min(lengths) < 1.0
    assert any(
        a.visible_s == (0.0, p.duration_s) for p in plans for a in p.appearances if a.visible_s
    )
    offsets = [
        abs(a.audible_s[0] - a.visible_s[0])
        for p in plans
        for a in p.appearances
        if a.role == "event"
    ]
    assert any(0.1 - 1e-9 <= offset <= 0.5 + 1e-9 for offset in offsets)
    # Events of different classes overlap in time somewhere.
    assert any(
        a[0] != b[0] and min(a[2], b[2]) > max(a[1], b[1])
        for p in plans
        for i, a in enumerate(labelled_segments(p))
        for b in labelled_segments(p)[i + 1 :]
    )


def test_labelled_segment_is_intersection_of_seen_and_heard() -> None:
    plan = _hand_plan([EVENT, SILENT, OFFSCREEN])
    assert labelled_segments(plan) == [(0, 1.0, 2.2)]
    assert sounding_intervals(plan, EVENT) == [(1.0, 2.2)]
    assert sounding_intervals(plan, SILENT) == []
    # The same class seen and heard at once by two separate appearances is an event too.
    seen = dataclasses.replace(SILENT, label_id=3, visible_s=(2.0, 2.8))
    assert labelled_segments(_hand_plan([seen, OFFSCREEN])) == [(3, 2.4, 2.8)]


def test_planned_labels_match_events_only() -> None:
    for plan in plan_dataset("tiny", SEED, 10) + plan_dataset("demo", 1, 10)[:40]:
        expected = []
        for a in plan.appearances:
            if a.role == "event":
                start, end = (
                    max(a.visible_s[0], a.audible_s[0]),
                    min(a.visible_s[1], a.audible_s[1]),
                )
                expected.append((a.label_id, round(start, 3), round(end, 3)))
            else:  # a distractor overlaps no labelled segment of its class
                interval = a.visible_s or a.audible_s
                for label_id, start, end in labelled_segments(plan):
                    assert label_id != a.label_id or end <= interval[0] or start >= interval[1]
        assert sorted(labelled_segments(plan)) == sorted(expected), plan.video_id


# ---------------------------------------------------------------- ground truth


def test_annotations_follow_unav_format(tiny_dir: Path) -> None:
    data = json.loads((tiny_dir / "annotations.json").read_text())
    jsonschema.validate(data, ANNOTATIONS_SCHEMA)
    assert set(data) == {"version", "database"}
    assert data["version"] == f"synth-tiny-seed{SEED}"
    assert list(data["database"]) == video_ids("tiny", SEED)
    labels = [spec.label for spec in make_classes(10)]
    for video_id, video in data["database"].items():
        assert set(video) == {"duration", "subset", "annotations"}
        assert isinstance(video["duration"], float)
        assert video["subset"] in {"train", "validation", "test"}
        assert video["annotations"], video_id
        for annotation in video["annotations"]:
            assert set(annotation) == {"segment", "label", "label_id"}
            start, end = annotation["segment"]
            assert 0.0 <= start < end <= video["duration"]
            assert round(start, 3) == start and round(end, 3) == end
            assert isinstance(annotation["label_id"], int)
            assert labels[annotation["label_id"]] == annotation["label"]


def test_boxes_json_lists_every_visible_object(tiny_dir: Path) -> None:
    data = json.loads((tiny_dir / "boxes.json").read_text())
    assert (data["fps"], data["width"], data["height"]) == (10, 64, 48)
    for plan in plan_dataset("tiny", SEED, 10):
        objects = data["videos"][plan.video_id]
        shown = [a for a in plan.appearances if a.visible_s is not None]
        assert len(objects) == len(shown)
        for entry, appearance in zip(objects, shown, strict=True):
            assert entry["label_id"] == appearance.label_id
            assert entry["sounding"] == (appearance.role == "event")
            frames = [row[0] for row in entry["boxes"]]
            first = round(appearance.visible_s[0] * plan.fps)
            assert frames == list(range(first, round(appearance.visible_s[1] * plan.fps)))
            for _, x0, y0, x1, y1 in entry["boxes"]:
                assert 0 <= x0 < x1 <= 64 and 0 <= y0 < y1 <= 48
            if appearance.role == "event":
                start = max(appearance.visible_s[0], appearance.audible_s[0])
                end = min(appearance.visible_s[1], appearance.audible_s[1])
                assert entry["sounding_intervals"] == [[round(start, 3), round(end, 3)]]
            else:
                assert entry["sounding_intervals"] == []


def test_segments_csv_agrees_with_annotations(tiny_dir: Path) -> None:
    annotations = json.loads((tiny_dir / "annotations.json").read_text())["database"]
    with (tiny_dir / "segments.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["video_id", "segment", "start_s", "end_s", "label", "label_id"]
    for video_id, video in annotations.items():
        video_rows = [row for row in rows if row["video_id"] == video_id]
        assert len(video_rows) == math.floor(video["duration"])
        for second, row in enumerate(video_rows):
            assert (int(row["segment"]), int(row["start_s"]), int(row["end_s"])) == (
                second,
                second,
                second + 1,
            )
            coverage: dict[int, float] = {}
            for a in video["annotations"]:
                overlap = min(a["segment"][1], second + 1) - max(a["segment"][0], second)
                coverage[a["label_id"]] = coverage.get(a["label_id"], 0.0) + max(0.0, overlap)
            best = max(coverage, key=lambda k: (coverage[k], -k), default=None)
            if best is not None and coverage[best] >= 0.5:
                assert int(row["label_id"]) == best
            else:
                assert (row["label"], int(row["label_id"])) == ("background", 10)


def test_segment_rows_by_hand() -> None:
    # red 1.0-2.2 s covers second 1 fully and second 2 for 0.2 s: second 2 is background.
    plan = _hand_plan([EVENT, SILENT, OFFSCREEN])
    assert [(r[1], r[5]) for r in segment_rows(plan)] == [(0, 10), (1, 0), (2, 10)]
    # Two classes in one second: the one covering it more wins.
    blue = dataclasses.replace(EVENT, label_id=2, visible_s=(1.9, 3.0), audible_s=(1.9, 3.0))
    assert [r[5] for r in segment_rows(_hand_plan([EVENT, blue]))] == [10, 0, 2]


def test_ground_truth_is_deterministic(tmp_path: Path, tiny_dir: Path) -> None:
    write_ground_truth(plan_dataset("tiny", SEED, 10), tmp_path)
    for name in ("annotations.json", "boxes.json", "segments.csv", "classes.json"):
        assert (tmp_path / name).read_bytes() == (tiny_dir / name).read_bytes(), name
    manifest = json.loads((tiny_dir / "videos" / "manifest.json").read_text())
    assert (manifest["size"], manifest["seed"], manifest["num_classes"]) == ("tiny", SEED, 10)
    plans = plan_dataset("tiny", SEED, 10)
    assert manifest["videos"] == {
        p.video_id: {"plan_hash": p.plan_hash(), "duration": round(p.duration_s, 3)} for p in plans
    }


# ---------------------------------------------------------------- rendered files


def test_videos_decode_with_expected_streams(tiny_dir: Path) -> None:
    for plan in plan_dataset("tiny", SEED, 10):
        path = tiny_dir / "videos" / f"{plan.video_id}.mp4"
        with av.open(str(path)) as container:
            assert abs(container.duration / av.time_base - plan.duration_s) <= 0.1
            video, audio = container.streams.video[0], container.streams.audio[0]
            assert video.codec_context.name == "h264"
            assert (video.width, video.height, video.format.name) == (64, 48, "yuv420p")
            assert video.average_rate == 10
            assert (audio.codec_context.name, audio.rate, audio.channels) == ("aac", 16000, 1)
            num_frames = sum(1 for _ in container.decode(video=0))
        assert num_frames == plan.num_frames
        assert abs(len(_decode_audio(path)) / 16000 - plan.duration_s) <= 0.1
        assert is_rendered(plan, path)


def test_object_is_drawn_inside_its_box_only_while_visible(hand_video) -> None:
    plan, path = hand_video
    frames = _decode_video(path)
    red = plan.classes[0].rgb
    for frame_index, image in enumerate(frames):
        red_pixels = _near_colour(image, red, 40)
        if 10 <= frame_index < 25:  # visible 1.0-2.5 s at 10 fps
            x0, y0, x1, y1 = object_box(plan, EVENT, frame_index)
            assert red_pixels[y0:y1, x0:x1].sum() >= 0.6 * 22 * 22 * math.pi / 4
            outside = red_pixels.copy()
            outside[y0:y1, x0:x1] = False
            assert outside.sum() == 0, frame_index
            assert np.all(np.abs(image[(y0 + y1) // 2, (x0 + x1) // 2].astype(int) - red) <= 30)
        else:
            assert red_pixels.sum() == 0, frame_index
        # The silent green square is drawn on every frame (its edges blur with chroma
        # subsampling, so look 2 px inside its box).
        gx0, gy0, gx1, gy1 = object_box(plan, SILENT, frame_index)
        green_pixels = _near_colour(image, plan.classes[1].rgb, 40)
        assert green_pixels[gy0 + 2 : gy1 - 2, gx0 + 2 : gx1 - 2].mean() > 0.9


def test_generated_objects_have_their_class_colour(tiny_dir: Path) -> None:
    boxes = json.loads((tiny_dir / "boxes.json").read_text())["videos"]
    checked = 0
    for plan in plan_dataset("tiny", SEED, 10):
        frames = _decode_video(tiny_dir / "videos" / f"{plan.video_id}.mp4")
        shown = [a for a in plan.appearances if a.visible_s is not None]
        for entry, appearance in zip(boxes[plan.video_id], shown, strict=True):
            for frame_index, x0, y0, x1, y1 in entry["boxes"]:
                others = [
                    row
                    for other in boxes[plan.video_id]
                    if other is not entry
                    for row in other["boxes"]
                    if row[0] == frame_index
                ]
                if any(r[1] < x1 and x0 < r[3] and r[2] < y1 and y0 < r[4] for r in others):
                    continue  # another object overlaps this one here
                x, y = appearance.motion.top_left(frame_index / plan.fps, 64, 48)
                side = appearance.motion.size_px
                covered = shape_alpha(plan.classes[entry["label_id"]].shape, side) >= 0.99
                patch = frames[frame_index][y : y + side, x : x + side].astype(int)
                distance = np.abs(patch[covered] - plan.classes[entry["label_id"]].rgb).max(axis=1)
                assert np.median(distance) <= 45, (plan.video_id, entry["label"], frame_index)
                checked += 1
                break
    assert checked >= 6


def test_class_sound_is_heard_only_while_audible(hand_video) -> None:
    plan, path = hand_video
    audio = _decode_audio(path)
    rate = plan.sample_rate
    tone_hz = plan.classes[0].frequency_hz  # red_circle_tone, audible 0.8-2.2 s
    pulses_hz = plan.classes[3].frequency_hz  # off-screen pulses, audible 2.4-3.0 s
    during = _tone_amplitude(audio, rate, 1.0, 2.0, tone_hz)
    before = _tone_amplitude(audio, rate, 0.0, 0.7, tone_hz) * 1.0 / 0.7  # same length as 1 s
    after = _tone_amplitude(audio, rate, 2.3, 3.0, tone_hz) * 1.0 / 0.7
    assert during > 20 * before and during > 20 * after
    pulses_on = _tone_amplitude(audio, rate, 2.4, 3.0, pulses_hz)
    pulses_off = _tone_amplitude(audio, rate, 0.0, 0.6, pulses_hz)
    assert pulses_on > 10 * pulses_off
    # The tone starts at 0.8 s and stops at 2.2 s, to within 30 ms.
    hop_s = 0.005
    starts = np.arange(0.0, plan.duration_s - 0.04, hop_s)
    envelope = np.array([_tone_amplitude(audio, rate, t, t + 0.04, tone_hz) for t in starts])
    loud = starts[envelope > 0.5 * envelope.max()] + 0.02  # centres of the 40-ms windows
    assert abs(loud.min() - 0.8) <= 0.03 and abs(loud.max() - 2.2) <= 0.03
    # Class sounds sit well above the background noise (SNR >= 10 dB).
    noise_rms = np.sqrt(np.mean(audio[round(0.1 * rate) : round(0.7 * rate)] ** 2))
    sound_rms = np.sqrt(np.mean(audio[round(1.0 * rate) : round(2.0 * rate)] ** 2))
    assert 20 * np.log10(sound_rms / noise_rms) >= 10


# ---------------------------------------------------------------- robustness


def test_failed_render_leaves_no_file(tmp_path: Path) -> None:
    classes = list(make_classes(10))
    classes[3] = dataclasses.replace(classes[3], sound="kazoo")
    plan = _hand_plan([EVENT, OFFSCREEN], classes=tuple(classes))
    path = tmp_path / "broken.mp4"
    with pytest.raises(ValueError, match="kazoo"):
        render_video(plan, path)
    assert list(tmp_path.iterdir()) == []


def test_generate_resumes_and_renders_only_missing(tmp_path: Path, tiny_dir: Path) -> None:
    out_dir = tmp_path / "tiny"
    shutil.copytree(tiny_dir, out_dir)
    videos = out_dir / "videos"
    victim = videos / f"{video_ids('tiny', SEED)[2]}.mp4"
    victim.unlink()
    (videos / ".tiny_s3_0004.abc123.part").write_bytes(b"half a video")  # a killed render
    (videos / "manifest.json").unlink()
    before = {p.name: p.stat().st_mtime_ns for p in videos.glob("*.mp4")}
    generate(out_dir, "tiny", SEED, num_classes=10)
    after = {p.name: p.stat().st_mtime_ns for p in videos.glob("*.mp4")}
    assert set(after) == set(before) | {victim.name}
    assert all(after[name] == mtime for name, mtime in before.items())
    assert not list(videos.glob(".*.part"))
    assert (videos / "manifest.json").is_file()
    assert (_decode_video(victim)[5] == _decode_video(tiny_dir / "videos" / victim.name)[5]).all()
    # A file holding another plan counts as not rendered.
    plan = plan_dataset("tiny", SEED, 10)[0]
    path = videos / f"{plan.video_id}.mp4"
    assert is_rendered(plan, path)
    assert not is_rendered(dataclasses.replace(plan, background_seed=1), path)


def test_parallel_generate_matches_serial(tmp_path: Path, tiny_dir: Path) -> None:
    generate(tmp_path, "tiny", SEED, num_classes=10, workers=2)
    assert (tmp_path / "annotations.json").read_bytes() == (
        tiny_dir / "annotations.json"
    ).read_bytes()
    assert (tmp_path / "videos" / "manifest.json").read_bytes() == (
        tiny_dir / "videos" / "manifest.json"
    ).read_bytes()
    name = f"{video_ids('tiny', SEED)[1]}.mp4"
    parallel = np.stack(_decode_video(tmp_path / "videos" / name)).astype(int)
    serial = np.stack(_decode_video(tiny_dir / "videos" / name)).astype(int)
    assert np.abs(parallel - serial).max() <= 2


def test_ground_truth_refuses_mixed_data_sets(tmp_path: Path) -> None:
    mixed = plan_dataset("tiny", SEED, 10)[:2] + plan_dataset("tiny", SEED + 1, 10)[:1]
    with pytest.raises(ValueError, match=f"tiny_s{SEED + 1}_0000"):
        write_ground_truth(mixed, tmp_path)
    with pytest.raises(ValueError, match="no plans"):
        write_ground_truth([], tmp_path)


def test_command_line_writes_the_data_set(tmp_path: Path, tiny_dir: Path, capsys) -> None:
    main(["--out", str(tmp_path), "--size", "tiny", "--seed", str(SEED), "--num-classes", "10"])
    assert (tmp_path / "annotations.json").read_bytes() == (
        tiny_dir / "annotations.json"
    ).read_bytes()
    assert len(list((tmp_path / "videos").glob("*.mp4"))) == 6
    capsys.readouterr()
    assert main(["--out", str(tmp_path), "--size", "medium"]) == 1  # a user error: one line
    assert "valid sizes" in capsys.readouterr().err
