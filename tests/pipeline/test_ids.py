"""Video ids and their safe file names (pipeline.ids); tests/test_workflow_names.py runs videos
of such names through the workflow."""

from __future__ import annotations

import os
import random
import re
import unicodedata
from urllib.parse import unquote

import pytest

from pipeline.config import extraction_settings, validate_config
from pipeline.extract import extract_shard
from pipeline.ids import MAX_SAFE_NAME_LENGTH, id_from_safe, safe_name
from tests import media

NFC_CAFE = unicodedata.normalize("NFC", "café")
NFD_CAFE = unicodedata.normalize("NFD", "café")
# Real collections' names: spaces, accents (both Unicode forms), quotes, '#', '%', shell and
# glob characters, braces, a leading '.', path-like names and other scripts.
HOSTILE_IDS = [
    "my vidéo #1", NFC_CAFE, NFD_CAFE, "it's \"quoted\" $HOME `x`", "100% done", "a{b}c",
    "*?[x]", ".hidden", "..", ".", "../x", "/abs", "a/b", "a\\b", "tab\there",
    "new\nline", "日本語のビデオ", "emoji 🎬", "trailing space ", "%41", "%2E", "~user",
]  # fmt: skip
SAFE_IDS = ["-0vO0a0Lyvc", "abc_123.x", "tiny_s0_0001", "A", "a.b.c", "x..y", "_", "-"]
SAFE_NAME = re.compile(r"^[A-Za-z0-9_%-][A-Za-z0-9_.%-]*$")


@pytest.mark.parametrize("video_id", SAFE_IDS)
def test_a_safe_id_is_its_own_name(video_id):
    assert safe_name(video_id) == video_id
    assert id_from_safe(video_id) == video_id


@pytest.mark.parametrize("video_id", HOSTILE_IDS)
def test_any_id_has_a_safe_name_that_gives_it_back(video_id):
    name = safe_name(video_id)
    assert SAFE_NAME.match(name) and "%" in name  # never '..', '/', absolute, hidden or glob
    assert not name.startswith(".") and name not in (".", "..")
    assert id_from_safe(name) == video_id
    assert unquote(name, errors="surrogateescape") == video_id  # plain percent-encoding


def test_safe_names_read_as_they_should():
    assert safe_name("my vidéo #1") == "my%20vid%C3%A9o%20%231"
    assert safe_name("..") == "%2E."
    assert safe_name("../x") == "%2E.%2Fx"
    assert safe_name("100% done") == "100%25%20done"


def test_nfc_and_nfd_spellings_are_two_ids_with_two_names():
    assert NFC_CAFE != NFD_CAFE
    assert safe_name(NFC_CAFE) == "caf%C3%A9" and safe_name(NFD_CAFE) == "cafe%CC%81"


def test_no_two_ids_share_a_safe_name():
    rng = random.Random(0)
    alphabet = "aZ09_.-% #'\"/\\éé日🎬\udcff{}"  # \udcff: a byte that is not UTF-8
    ids = set(SAFE_IDS) | set(HOSTILE_IDS)
    ids |= {"".join(rng.choices(alphabet, k=rng.randint(1, 8))) for _ in range(20_000)}
    names = {}
    for video_id in ids:
        name = safe_name(video_id)
        assert names.setdefault(name, video_id) == video_id, (name, names[name], video_id)
        assert id_from_safe(name) == video_id


def test_a_file_name_that_is_not_utf8_round_trips():
    video_id = os.fsdecode(b"clip\xff\xfe")  # how Python lists such a file: surrogateescape
    name = safe_name(video_id)
    assert name == "clip%FF%FE" and id_from_safe(name) == video_id


@pytest.mark.parametrize("video_id", ["", "\ud800", "\udcc3\udca9"])  # last: not from a file
def test_ids_no_file_can_have_are_refused(video_id):
    with pytest.raises(ValueError, match="not allowed"):
        safe_name(video_id)


def test_a_name_too_long_for_a_store_is_refused_naming_the_limit():
    assert safe_name("a" * MAX_SAFE_NAME_LENGTH) == "a" * MAX_SAFE_NAME_LENGTH
    with pytest.raises(ValueError, match=f"at most {MAX_SAFE_NAME_LENGTH}"):
        safe_name("a" * (MAX_SAFE_NAME_LENGTH + 1))
    with pytest.raises(ValueError, match=f"at most {MAX_SAFE_NAME_LENGTH}"):
        safe_name("é" * (MAX_SAFE_NAME_LENGTH // 6 + 1))


@pytest.mark.parametrize("name", ["", ".x", "%2e.", "%41", "a%2", "a b", "a/b", "%ZZ", "%C3%A"])
def test_names_that_no_id_maps_to_are_refused(name):
    with pytest.raises(ValueError, match="not a video's safe name"):
        id_from_safe(name)


def test_extraction_skips_a_name_too_long_for_a_store(tmp_path):
    long_name = "é" * 40  # 40 characters, a 240-character safe name
    video = tmp_path / f"{long_name}.mp4"
    media.make_video(video, duration_s=1.0, fps=8)
    settings = extraction_settings(validate_config({}))
    out_dir = tmp_path / "features"
    common = {"settings": settings, "out_dir": out_dir, "device": "cpu"}
    manifest = extract_shard([video], manifest_path=tmp_path / "m.json", on_error="skip", **common)
    assert manifest["videos"] == {} and "too long" in manifest["failed"][long_name]
    with pytest.raises(ValueError, match="too long") as info:
        extract_shard([video], manifest_path=tmp_path / "m2.json", on_error="fail", **common)
    assert str(video) in str(info.value)
    assert not out_dir.exists() or not list(out_dir.glob("*.zarr"))
