"""Checkpoint stores and the writer that feeds them.

State is sealed in Rust (versioned, CRC32C-checked envelopes; bincode by
default, msgpack or JSON on request) and written here, off the hot path.
"""

from headrace.checkpoint.memory import MemoryStore
from headrace.checkpoint.store import CheckpointStore, open_store
from headrace.checkpoint.writer import CheckpointWriter

__all__ = ["CheckpointStore", "CheckpointWriter", "MemoryStore", "open_store"]
