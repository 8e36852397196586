"""The results viewer (pipeline.viewer): the page's data, its media folder, and the page itself
in a real browser.

The inputs are made by hand (two test videos, one of them with a real 4 s H.264 + AAC file from
tests/media.py; two runs scored by the real evaluator; a segment run; a heatmap figure), so
every number the page should show is known. The browser tests drive Debian's Chromium headless
through chromedriver (``make browser`` installs both where it can) and are skipped, saying why,
where they are missing. They keep a screenshot at :data:`SCREENSHOT`.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pytest

from pipeline.detection.evaluate import evaluate_events
from pipeline.viewer import build, data
from tests import media

REPO = Path(__file__).resolve().parents[1]
SCREENSHOT = REPO / "results" / "test-artifacts" / "viewer.png"
FPS = 10  # the test video's frame rate: a seek is checked to within one frame
CLASSES = ["dog_barking", "car_engine"]
ANNOTATIONS = {
    "clip_a": ("test", 4.0, [(0.5, 1.5, 0), (2.0, 3.5, 1)]),
    "clip_b": ("test", 3.0, [(1.0, 2.0, 0)]),  # no video file: timeline only
    "train_clip": ("train", 3.0, [(0.0, 1.0, 0), (1.0, 2.0, 1)]),
}
DETECTIONS = {  # run -> video -> (start, end, class, score)
    "strong": {
        "clip_a": [(0.6, 1.4, 0, 0.9), (2.1, 3.4, 1, 0.8), (0.2, 0.4, 1, 0.3), (3.0, 3.9, 0, 0.1)],
        "clip_b": [(1.0, 2.0, 0, 0.7)],
    },
    "weak": {  # car at tIoU 0.4 with its event: found at 0.3, missed at 0.5
        "clip_a": [(2.5, 3.0, 0, 0.4), (2.0, 2.6, 1, 0.6)],
    },
}
SEGMENT_LABELS = {"clip_a": [0, 0, 1, 1], "clip_b": [2, 0, 2], "train_clip": [0, 1, 2]}
SEGMENT_PREDICTIONS = {"clip_a": [0, 2, 1, 1], "clip_b": [2, 0, 2]}  # one wrong second


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict:
    """The viewer's inputs as the workflow lays them out, written by hand."""
    root = tmp_path_factory.mktemp("viewer-inputs")
    database = {
        video_id: {
            "subset": subset,
            "duration": duration,
            "annotations": [
                {"segment": [start, end], "label": CLASSES[k], "label_id": k}
                for start, end, k in events
            ],
        }
        for video_id, (subset, duration, events) in ANNOTATIONS.items()
    }
    annotations = root / "annotations.json"
    annotations.write_text(json.dumps({"version": "test", "database": database}))
    runs = []
    for run, videos in DETECTIONS.items():
        events = root / "runs" / run / "events" / "test.json"
        events.parent.mkdir(parents=True)
        results = {
            video_id: [
                {"segment": [start, end], "label": CLASSES[k], "score": score}
                for start, end, k, score in rows
            ]
            for video_id, rows in videos.items()
        }
        events.write_text(json.dumps({"results": results}))
        evaluate_events(
            annotations,
            "test",
            events,
            [0.3, 0.5, 0.7],
            out_path=root / "runs" / run / "metrics.json",
        )
        runs.append(root / "runs" / run)
    segments = root / "segments.csv"
    names = [*CLASSES, "background"]
    segments.write_text(
        "video_id,segment,start_s,end_s,label,label_id\n"
        + "".join(
            f"{video_id},{second},{second},{second + 1},{names[k]},{k}\n"
            for video_id, labels in SEGMENT_LABELS.items()
            for second, k in enumerate(labels)
        )
    )
    segment_run = root / "segments" / "runs" / "tacma"
    segment_run.mkdir(parents=True)
    (segment_run / "metrics.json").write_text(
        json.dumps({"test_accuracy": 6 / 7, "test_predictions": SEGMENT_PREDICTIONS})
    )
    heatmaps = root / "spatial" / "m2vsl" / "seed0" / "heatmaps.png"
    heatmaps.parent.mkdir(parents=True)
    plt.imsave(heatmaps, np.random.default_rng(0).random((24, 32)))
    video = root / "videos" / "clip_a.mp4"
    video.parent.mkdir()
    media.make_video(video, duration_s=4.0, fps=FPS, size=(64, 48))
    return {
        "annotations": annotations,
        "runs": runs,
        "videos": {"clip_a": video},
        "segments_csv": segments,
        "segment_runs": [segment_run],
        "heatmaps": [heatmaps],
    }


@pytest.fixture(scope="module")
def viewer(inputs, tmp_path_factory) -> Path:
    """The page built from :func:`inputs`, in its own folder."""
    out = tmp_path_factory.mktemp("viewer") / "viewer" / "index.html"
    return build.build_viewer(out, title="handmade", **inputs)


def test_detections_keep_the_best_of_the_videos_shown(inputs):
    events = inputs["runs"][0] / "events" / "test.json"
    kept = data.run_detections(events, tuple(CLASSES), {"clip_a"}, max_per_video=2)
    assert kept == {"clip_a": [[0.6, 1.4, 0, 0.9], [2.1, 3.4, 1, 0.8]]}


def test_page_data_and_media_folder(inputs, viewer):
    page = build.read_page_data(viewer)
    assert page["title"] == "handmade" and page["classes"] == CLASSES
    assert [(v["id"], v["src"], v["events"]) for v in page["videos"]] == [
        ("clip_a", "videos/clip_a.mp4", [[0.5, 1.5, 0], [2.0, 3.5, 1]]),
        ("clip_b", None, [[1.0, 2.0, 0]]),
    ]
    assert (viewer.parent / "videos" / "clip_a.mp4").samefile(inputs["videos"]["clip_a"])
    assert (viewer.parent / "spatial" / "m2vsl-seed0.png").samefile(inputs["heatmaps"][0])
    assert page["heatmaps"] == [{"caption": "m2vsl, seed 0", "src": "spatial/m2vsl-seed0.png"}]
    for run in inputs["runs"]:
        written = json.loads((run / "metrics.json").read_text())
        metrics = page["runs"][run.name]["metrics"]
        assert metrics["tiou"] == [0.3, 0.5, 0.7]
        assert metrics["mAP"] == [written["mAP"][key] for key in ("0.3", "0.5", "0.7")]
        assert metrics["ap_per_class"][0] == pytest.approx(
            np.mean(list(written["ap_per_class"]["dog_barking"].values()))
        )
    assert page["runs"]["strong"]["detections"]["clip_b"] == [[1, 2, 0, 0.7]]
    assert page["segments"]["labels"] == {k: SEGMENT_LABELS[k] for k in ("clip_a", "clip_b")}
    assert page["segments"]["classes"] == {"0": "dog_barking", "1": "car_engine", "2": "background"}
    assert page["segments"]["runs"]["tacma"]["predicted"] == SEGMENT_PREDICTIONS


def test_no_string_in_the_data_closes_its_script():
    page = build.render_page({"title": "a</script><b>", "note": "</script><script>alert(1)"})
    assert page.count("</script>") == 2  # the data's element and the script's
    assert "alert" in page and "<b>" not in page


def test_a_rebuild_removes_stale_media(tmp_path):
    source = tmp_path / "a.mp4"
    source.write_bytes(b"video")
    folder = tmp_path / "viewer" / "videos"
    folder.mkdir(parents=True)
    (folder / "old.mp4").write_bytes(b"stale")
    urls = build.place_media({"a b.mp4": source}, folder)
    assert urls == {"a b.mp4": "videos/a%20b.mp4"}
    assert sorted(path.name for path in folder.iterdir()) == ["a b.mp4"]


def test_cli_names_a_missing_metrics_file(inputs, tmp_path, capsys):
    run = tmp_path / "runs" / "strong"
    shutil.copytree(inputs["runs"][0] / "events", run / "events")
    argv = ["--title", "x", "--annotations", str(inputs["annotations"]), "--runs", str(run)]
    assert build.main([*argv, "--out", str(tmp_path / "viewer" / "index.html")]) == 1
    assert f"detection metrics {run / 'metrics.json'} does not exist" in capsys.readouterr().err
    assert not (tmp_path / "viewer" / "index.html").exists()


def test_segment_metrics_without_predictions_are_refused(tmp_path):
    (tmp_path / "metrics.json").write_text(json.dumps({"test_accuracy": 0.5}))
    with pytest.raises(ValueError, match=r"no test_predictions.*rerun the segments_train rule"):
        data.segment_runs({"old": tmp_path / "metrics.json"}, {"clip_a"})


# In a real browser.


@pytest.fixture(scope="module")
def browser():
    """Debian's Chromium, headless, through chromedriver; skipped where either is missing."""
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
    chromium, chromedriver = shutil.which("chromium"), shutil.which("chromedriver")
    if not chromium or not chromedriver:
        pytest.skip(
            "Chromium or chromedriver is not on PATH: `make browser` installs Debian's chromium "
            "and chromium-driver where it runs as root with apt-get"
        )
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in (
        "--headless=new",
        "--no-sandbox",  # as root, in a container
        "--disable-dev-shm-usage",
        "--autoplay-policy=no-user-gesture-required",  # play() without a click
        "--window-size=1280,1900",
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(chromedriver))
    yield driver
    driver.quit()


def open_page(driver, viewer: Path) -> None:
    driver.get(viewer.as_uri())
    deadline = time.monotonic() + 10
    while driver.execute_script("return document.body.dataset.ready") != "true":
        assert time.monotonic() < deadline, "the page did not finish setting up"
        time.sleep(0.05)


def console_errors(driver) -> list[dict]:
    return [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


def drawn(driver, run: str, kind: str = "det") -> int:
    return len(driver.find_elements("css selector", f"#timelines [data-run='{run}'] .{kind}"))


def set_control(driver, element_id: str, value, event: str) -> None:
    driver.execute_script(
        "const c = document.getElementById(arguments[0]); c.value = arguments[1];"
        "c.dispatchEvent(new Event(arguments[2]));",
        element_id,
        value,
        event,
    )


def current_time(driver) -> float:
    return driver.execute_script("return document.getElementById('video-player').currentTime")


def test_page_loads_and_plays_without_console_errors(browser, viewer):
    open_page(browser, viewer)
    played = browser.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "const video = document.getElementById('video-player'); video.muted = true;"
        "video.play().then(() => setTimeout(() => done([video.currentTime, null]), 800),"
        "  (error) => done([video.currentTime, String(error)]));"
    )
    assert played[1] is None and played[0] > 0.3, played
    assert browser.find_element("id", "video-message").get_attribute("hidden")
    assert console_errors(browser) == []


def test_clicking_an_event_seeks_to_its_start(browser, viewer):
    open_page(browser, viewer)
    browser.execute_script("document.getElementById('video-player').pause()")
    truth = browser.find_element("css selector", "[data-run='strong'] .gt[data-start='2']")
    truth.click()
    assert current_time(browser) == pytest.approx(2.0, abs=1 / FPS)
    cursor = browser.find_element("css selector", "[data-run='strong'] .cursor")
    assert "0.5)" in cursor.get_attribute("style")  # 2 s of 4 s
    browser.find_element("css selector", "[data-run='strong'] .det[data-start='0.6']").click()
    assert current_time(browser) == pytest.approx(0.6, abs=1 / FPS)
    assert console_errors(browser) == []


def test_score_class_and_tiou_filters(browser, viewer):
    open_page(browser, viewer)
    assert drawn(browser, "strong") == 4  # starts at ~3 detections per event: all of clip_a's
    set_control(browser, "score", 0.5, "input")
    assert drawn(browser, "strong") == 2
    set_control(browser, "score", 0.85, "input")
    assert drawn(browser, "strong") == 1
    assert "strong: 1" in browser.find_element("id", "count").text
    set_control(browser, "score", 0, "input")
    browser.find_element("css selector", "#class-list input[value='1']").click()  # car off
    assert drawn(browser, "strong") == 2 and drawn(browser, "strong", "gt") == 1
    browser.find_element("id", "classes-all").click()
    set_control(browser, "run-a", "weak", "change")
    assert drawn(browser, "weak", "gt.missed") == 2  # the car detection overlaps 0.4
    set_control(browser, "tiou", "0.3", "change")
    assert drawn(browser, "weak", "gt.missed") == 1
    assert console_errors(browser) == []


def test_two_runs_side_by_side_segments_and_heatmaps(browser, viewer):
    open_page(browser, viewer)
    set_control(browser, "run-b", "weak", "change")
    timelines = browser.find_elements("css selector", "#timelines .timeline")
    assert [t.get_attribute("data-run") for t in timelines] == ["strong", "weak"]
    assert len(browser.find_elements("css selector", "#map-chart .curve")) == 2
    header = browser.find_elements("css selector", "#ap-table th")
    assert [cell.text for cell in header[1:]] == ["strong", "weak"]
    rows = browser.find_elements("css selector", "#segments .segment-row")
    assert [row.find_element("class name", "lane-label").text for row in rows] == [
        "labels",
        "tacma (85.7 %)",
    ]
    assert len(browser.find_elements("css selector", "#segments .cell.wrong")) == 1
    assert browser.execute_script("return document.querySelector('#heatmaps img').naturalWidth") > 0
    browser.execute_async_script(  # played to about 1.2 s for the screenshot
        "const done = arguments[arguments.length - 1];"
        "const video = document.getElementById('video-player'); video.muted = true;"
        "video.play().then(() => setTimeout(() => { video.pause(); done(); }, 1200));"
    )
    time.sleep(0.3)  # the controls fade in after the pause
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    assert browser.save_screenshot(str(SCREENSHOT))
    print(f"viewer screenshot: {SCREENSHOT}")
    assert console_errors(browser) == []


def test_a_video_without_a_file_still_seeks(browser, viewer):
    open_page(browser, viewer)
    set_control(browser, "video", "1", "change")  # clip_b
    assert browser.find_element("id", "video-message").is_displayed()
    assert not browser.find_element("id", "video-player").is_displayed()
    browser.find_element("css selector", "[data-run='strong'] .gt[data-start='1']").click()
    assert browser.find_element("id", "clock").text.startswith("1.00 s of 3.00 s")
    assert console_errors(browser) == []
