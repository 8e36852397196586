"""Video ids and the file names made from them.

A video's id is whatever names it: a file's stem (``my vidéo #1`` for ``my vidéo #1.mp4``), an
annotation key. Every per-video path is made from the id's *safe name* (:func:`safe_name`), never
from the id itself:

- an id made of letters, digits, ``_``, ``-`` and ``.``, not starting with ``.`` (every YouTube
  id, every synthetic one), is its own safe name;
- any other id is percent-encoded (RFC 3986 style, on its UTF-8 bytes): each character outside
  that set, and a leading ``.``, becomes ``%XX`` per byte (``my vidéo #1`` ->
  ``my%20vid%C3%A9o%20%231``). ``%`` is the marker: no id that is its own safe name contains it,
  so two ids never share a safe name, and :func:`id_from_safe` (or ``urllib.parse.unquote``)
  gives the id back.

A safe name holds only ``[A-Za-z0-9_.%-]`` and never starts with ``.``: it can never be ``..``,
hold a ``/`` or be absolute, so no id can name a path outside its output folder, and no shell
or glob character reaches a command line. Bytes that are not UTF-8 (a file name in another
encoding, which Python reads with ``surrogateescape``) are encoded as the bytes they were.

:func:`check_video_id` is the strict check for ids that name files as they are (feature
releases, sound-source benchmarks, annotation keys). Kept free of heavy imports: the Snakefile
calls this module while building the DAG.
"""

from __future__ import annotations

import re

_VIDEO_ID = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,254}$")
# Characters a safe name keeps as they are (a leading '.' is encoded all the same).
_SAFE_CHARACTERS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-")
_SAFE_NAME = re.compile(r"^(?:[A-Za-z0-9_-]|%[0-9A-F]{2})(?:[A-Za-z0-9_.-]|%[0-9A-F]{2})*$")
# Longest safe name: a store's temporary name (``.{name}.zarr.tmp-1234abcd``, 19 more
# characters) must stay under the 255 bytes most file systems allow.
MAX_SAFE_NAME_LENGTH = 200
# An id that is its own safe name: safe characters only, no leading '.', not too long.
_OWN_SAFE_NAME = re.compile(rf"[A-Za-z0-9_-][A-Za-z0-9_.-]{{0,{MAX_SAFE_NAME_LENGTH - 1}}}\Z")


def check_video_id(video_id: str) -> str:
    """Refuse ids that could escape the output folder (``../x``, ``/abs``, hidden names)."""
    if not _VIDEO_ID.match(video_id):
        raise ValueError(
            f"video id {video_id!r} is not allowed: use letters, digits, '_', '-' and '.', "
            "not starting with '.', without path separators"
        )
    return video_id


def safe_name(video_id: str) -> str:
    """The file name (without extension) of ``video_id``'s store and other per-video files.

    Raises:
        ValueError: the id is empty, not a string or not text (a lone surrogate that no file
            name decodes to), or its safe name is longer than :data:`MAX_SAFE_NAME_LENGTH`
            characters (rename the file).
    """
    if not isinstance(video_id, str) or not video_id:
        raise ValueError(f"video id {video_id!r} is not allowed: it must be a non-empty string")
    if _OWN_SAFE_NAME.match(video_id):  # the common case, without the byte-by-byte encoding
        return video_id
    try:
        data = video_id.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        data = None
    if data is None or data.decode("utf-8", "surrogateescape") != video_id:
        raise ValueError(f"video id {video_id!r} is not allowed: it is not valid text")
    encoded = "".join(
        chr(byte) if chr(byte) in _SAFE_CHARACTERS else f"%{byte:02X}" for byte in data
    )
    if encoded.startswith("."):
        encoded = "%2E" + encoded[1:]
    if len(encoded) > MAX_SAFE_NAME_LENGTH:
        raise ValueError(
            f"video id {video_id!r} is too long: its file name {encoded[:40]}... has "
            f"{len(encoded)} characters, at most {MAX_SAFE_NAME_LENGTH} fit; rename the file "
            "(each character outside A-Z, a-z, 0-9, '_', '-', '.' takes 3 to 12)"
        )
    return encoded


def id_from_safe(name: str) -> str:
    """The video id whose :func:`safe_name` is ``name`` (``name`` without the ``.zarr``).

    Raises:
        ValueError: ``name`` is not the safe name of any id.
    """
    if not _SAFE_NAME.match(name):
        raise ValueError(f"{name!r} is not a video's safe name: see pipeline.ids")
    parts = re.split(r"%([0-9A-F]{2})", name)  # text, hex, text, hex, ..., text
    data = b"".join(
        bytes([int(part, 16)]) if index % 2 else part.encode("ascii")
        for index, part in enumerate(parts)
    )
    video_id = data.decode("utf-8", "surrogateescape")
    if not video_id or safe_name(video_id) != name:  # e.g. '%41' for 'A': not the canonical form
        raise ValueError(f"{name!r} is not a video's safe name: see pipeline.ids")
    return video_id
