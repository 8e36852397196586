"""The one check that refuses unknown configuration keys, used by every component and stage.

It imports nothing heavy (no torch), so the workflow's configuration boundary
(:mod:`pipeline.config`) can run it while the DAG is built.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any


def check_keys(given: Mapping[str, Any] | Iterable[str], valid: Iterable[str], where: str) -> None:
    """Refuse keys of ``given`` that are not in ``valid``.

    Args:
        given: a config mapping (its keys are checked) or the keys themselves.
        valid: the accepted keys.
        where: what holds the keys, as the user wrote it: ``"runs.loco.model"``,
            ``"visual encoder 'classic'"``.

    Raises:
        ValueError: ``unknown key(s) 'where.k'; valid keys here: a, b, c`` for the first
            unknown keys, in sorted order.
    """
    valid = list(valid)
    unknown = sorted(set(given) - set(valid))
    if unknown:
        names = ", ".join(f"'{where}.{key}'" for key in unknown)
        raise ValueError(
            f"unknown key{'s' if len(unknown) > 1 else ''} {names}; "
            f"valid keys here: {', '.join(sorted(valid))}"
        )
