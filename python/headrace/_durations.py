"""Durations as users write them: ``"5s"``, ``"250ms"``, ``1.5`` (seconds)."""

from __future__ import annotations

import re

_UNITS = {"us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_PATTERN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(us|µs|ms|s|m|h)\s*$")


def seconds(value: str | float | int, *, what: str) -> float:
    """Returns ``value`` in seconds; raises ValueError naming ``what`` if malformed."""
    if isinstance(value, bool):
        raise ValueError(f"{what}: expected a duration such as '5s' or 0.5, got {value!r}")
    if isinstance(value, (int, float)):
        result = float(value)
    elif isinstance(value, str):
        match = _PATTERN.match(value)
        if match is None:
            raise ValueError(
                f"{what}: cannot read duration {value!r}; use a number of seconds or "
                "a number with a unit (us, ms, s, m, h), e.g. '250ms'"
            )
        result = float(match.group(1)) * _UNITS[match.group(2)]
    else:
        raise ValueError(f"{what}: expected a duration such as '5s' or 0.5, got {value!r}")
    if not result > 0 or result == float("inf"):
        raise ValueError(f"{what}: must be a positive, finite duration, got {value!r}")
    return result
