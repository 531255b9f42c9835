"""The one options object a :class:`~headrace.Runtime` hands to the engine.

Plain data: the Rust side reads it by attribute once, checks every spelling
and range there (raising :class:`~headrace.SettingError`), and keeps nothing
of it but the converted values. Durations are in seconds here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from headrace._core import OnOutput

__all__ = ["CheckpointCodec", "EngineOptions", "Mode", "OnCorrupt"]

Mode = Literal["inline", "thread"]
CheckpointCodec = Literal["bincode", "msgpack", "json"]
OnCorrupt = Literal["refuse", "start_empty"]


@dataclass(frozen=True, slots=True)
class EngineOptions:
    """Settings of one engine (see :class:`~headrace.Runtime` for each)."""

    mode: Mode = "inline"
    #: Called with every FireResult, or ``hr.on_output(node, fn)``.
    on_fire: Callable[[Any], Any] | OnOutput | None = None
    capacity: int = 65536
    push_timeout: float | None = None
    max_attempts: int = 3
    retry_backoff: float = 0.1
    dead_letter_limit: int = 10_000
    idle_spin: float = 50e-6
    #: The checkpoint writer (``submit``/``fail``); None: no store.
    checkpoint_writer: Any = None
    checkpoint_codec: CheckpointCodec = "bincode"
    checkpoint_every: int = 1000
    checkpoint_interval: float | None = None
    #: Stored components to restore before any event.
    restore: dict[str, bytes] | None = None
    #: Names the checkpoint in messages.
    checkpoint_key: str = ""
    on_corrupt: OnCorrupt = "refuse"
    #: Called as ``(accumulator, data, topic, partition, offset, error)`` for
    #: an undecodable stream message.
    on_undecodable: Callable[[str, bytes, str, int, int, str], None] | None = None
    check_checkpointable: bool | None = None
    #: Time each node of each fire (``FireResult.node_ns``).
    profile: bool = False
    #: Keep the values each fire's nodes received (``FireResult.inputs``).
    record_inputs: bool = False
    #: A chain graph's events may run through its chain runners.
    chain_runs: bool = True
    #: A simulated clock to run on (None: the wall clock).
    clock: Any = None
    #: The ``_core.JournalWriter`` every input is recorded to (None: none).
    journal: Any = None
    #: Replaying a journal: latest and burst inputs settle where it says.
    replay: bool = False
    #: A running asyncio loop for async nodes and accumulators (None: the
    #: runtime starts its own when the graph has any).
    loop: Any = None
