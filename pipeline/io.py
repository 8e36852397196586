"""Reading JSON, writing files atomically and hashing settings: the file helpers every stage shares.

A killed job must never leave a file that looks finished. Every writer here writes to a
temporary file beside the target (a hidden name ending in ``.part``, unique to the call) and
renames it onto the target with :func:`os.replace`, atomic within one file system; when the
writing fails the temporary file is removed. Feature stores, which are folders, have their own
writer (:func:`pipeline.store.atomic_directory`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def read_json(path: str | Path, what: str, hint: str = "") -> Any:
    """The parsed contents of a JSON file.

    Args:
        path: the file.
        what: what the file is, for messages (``"feature index"``).
        hint: what to do about a missing or unreadable file, appended to the message.

    Raises:
        FileNotFoundError: no file at ``path``: ``"{what} {path} does not exist; {hint}"``.
        ValueError: the file is not valid UTF-8 JSON; the message names it and the position.
    """
    path = Path(path)
    suffix = f"; {hint}" if hint else ""
    if not path.is_file():
        raise FileNotFoundError(f"{what} {path} does not exist{suffix}")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{what} {path} is not valid JSON ({err}){suffix}") from err


@contextlib.contextmanager
def atomic_path(path: str | Path, suffix: str = ".part") -> Iterator[Path]:
    """A temporary path beside ``path`` for a writer; renamed onto ``path`` when the block ends.

    The parent folder is created. If the block raises, the temporary file is removed and
    ``path`` is left as it was.

    Args:
        path: the file to write.
        suffix: end of the temporary name; ``".part.npz"`` for writers that append their own
            extension otherwise (:func:`numpy.savez`).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temp_path = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}{suffix}")
    try:
        yield temp_path
        os.replace(temp_path, path)
    except BaseException:
        temp_path.unlink(missing_ok=True)
        raise


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` through a temporary file and a rename; return ``path``."""
    with atomic_path(path) as temp_path:
        temp_path.write_text(text, encoding="utf-8")
    return Path(path)


def write_json_atomic(path: str | Path, value: Any, **dumps_kwargs: Any) -> Path:
    """Write ``json.dumps(value, **dumps_kwargs)`` to ``path`` atomically; return ``path``."""
    return write_text_atomic(path, json.dumps(value, **dumps_kwargs))


def stable_hash(value: Any, length: int = 12) -> str:
    """Hash of a JSON-serialisable value, independent of key order.

    The first ``length`` hex digits of the SHA-256 of ``value`` as compact JSON with sorted keys.
    """
    text = json.dumps(value, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:length]
