"""Stream sources: what feeds stream accumulators (Kafka, or any backend
registered with ``register_stream_backend``). They run in thread mode."""

from headrace.sources.backend import (
    Assignment,
    MessageError,
    StreamBackend,
    StreamConfig,
    StreamError,
    resolve_broker,
)
from headrace.sources.registry import register_stream_backend, stream_backend

__all__ = [
    "Assignment",
    "MessageError",
    "StreamBackend",
    "StreamConfig",
    "StreamError",
    "register_stream_backend",
    "resolve_broker",
    "stream_backend",
]
