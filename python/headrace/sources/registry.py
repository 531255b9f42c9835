"""Stream backends by name: ``@stream_accumulator(type=name)`` picks one here.

Built-ins are named by a ``"module:attr"`` string and imported on first use,
so this module imports no backend (and a backend may import ``backend.py``
freely): ``import headrace`` does not load confluent-kafka.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import cast

from headrace.errors import HeadraceError
from headrace.sources.backend import StreamBackend, StreamConfig

__all__ = ["BackendFactory", "register_stream_backend", "stream_backend"]

BackendFactory = Callable[[StreamConfig], StreamBackend]

_BUILT_IN: dict[str, str] = {
    "kafka": "headrace.sources.kafka:KafkaBackend",
    # headrace.testing.MemoryBroker's consumers.
    "memory": "headrace.testing._broker:MemoryBackend",
}
_REGISTRY: dict[str, BackendFactory] = {}


def register_stream_backend(name: str, factory: BackendFactory) -> None:
    """Makes ``@stream_accumulator(type=name, ...)`` use ``factory(config)``."""
    if not callable(factory):
        raise TypeError(f"stream backend factory for '{name}' must be callable")
    _REGISTRY[name] = factory


def stream_backend(name: str) -> BackendFactory:
    if name not in _REGISTRY and name in _BUILT_IN:
        _REGISTRY[name] = _load(_BUILT_IN[name])
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY.keys() | _BUILT_IN.keys())) or "none"
        raise HeadraceError(
            f"no stream backend '{name}' (registered: {known}); use headrace.register_stream_backend"
        ) from None


def _load(target: str) -> BackendFactory:
    module, _, attr = target.partition(":")
    return cast(BackendFactory, getattr(importlib.import_module(module), attr))
