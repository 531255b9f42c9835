"""Stream sources: what feeds stream accumulators (Kafka, or any backend
registered with ``register_stream_backend``). They run in thread mode."""

from headrace.sources.backend import (
    Assignment,
    StreamBackend,
    StreamConfig,
    StreamError,
    register_stream_backend,
    resolve_broker,
)

__all__ = ["Assignment", "StreamBackend", "StreamConfig", "StreamError", "register_stream_backend", "resolve_broker"]
