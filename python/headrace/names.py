"""Names that reach the filesystem: tenants, graphs, accumulators, versions.

They become folder and file names (``packages/<tenant>/<graph>/<version>-…``,
``fires/<tenant>/<graph>.db``), so every entry point (``package.toml``,
:class:`~headrace.ComputationGraph`, the accumulator decorators, the API's
paths and key scopes, the CLI) checks them against one pattern:

    1 to 64 ASCII letters, digits, ``_``, ``.`` or ``-``, starting with a
    letter, a digit or ``_``.

That rules out ``..``, ``.``, ``/``, the empty name, control characters,
whitespace and look-alike letters from other scripts. :func:`path_under` then
checks that a path built from names stays inside its root all the same.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from headrace.errors import InvalidNameError

__all__ = ["MAX_NAME_LENGTH", "NAME_PATTERN", "check_name", "name_problem", "path_under"]

MAX_NAME_LENGTH = 64
#: The one pattern every name must match (``re.ASCII``: no look-alike letters).
NAME_PATTERN = rf"[A-Za-z0-9_][A-Za-z0-9_.-]{{0,{MAX_NAME_LENGTH - 1}}}"
_NAME = re.compile(NAME_PATTERN, re.ASCII)


def name_problem(kind: str, value: object) -> str | None:
    """Why ``value`` is not a valid ``kind`` name (e.g. "graph"), or None."""
    if isinstance(value, str) and _NAME.fullmatch(value):
        return None
    shown = repr(value) if not isinstance(value, str) or len(value) <= 80 else repr(value[:80]) + "…"
    return (
        f"{kind} name {shown} is not valid: it must be 1 to {MAX_NAME_LENGTH} ASCII letters, digits, "
        f"'_', '.' or '-', starting with a letter, digit or '_' (pattern {NAME_PATTERN})"
    )


def check_name(kind: str, value: object) -> str:
    """Returns ``value`` if it is a valid ``kind`` name.

    Raises:
        InvalidNameError: naming the kind, the value and the pattern.
    """
    problem = name_problem(kind, value)
    if problem is not None:
        raise InvalidNameError(problem, kind=kind, value=value, pattern=NAME_PATTERN)
    assert isinstance(value, str)
    return value


def path_under(root: Path, *parts: str) -> Path:
    """``root / part / …``, refusing any part that is not one plain path
    component and any result outside ``root`` (a second line of defence
    behind :func:`check_name`).

    Raises:
        InvalidNameError: a part is empty, ``.``, ``..``, holds a separator
            or a NUL, or the path leaves ``root``.
    """
    base = Path(os.path.abspath(root))
    for part in parts:
        if part in ("", ".", "..") or "/" in part or "\0" in part or (os.sep != "/" and os.sep in part):
            raise InvalidNameError(
                f"path component {part!r} under {base} is not a plain file or folder name",
                kind="path component",
                value=part,
                pattern=NAME_PATTERN,
            )
    path = Path(os.path.abspath(base.joinpath(*parts)))
    if not path.is_relative_to(base):
        raise InvalidNameError(f"path {path} leaves {base}", kind="path", value=str(path), pattern=NAME_PATTERN)
    return path
