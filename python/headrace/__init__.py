"""headrace: low-latency computation graphs with a Rust core.

Accumulators turn incoming events into boundary values, a reactor decides
when to fire, and a DAG of Python node functions runs over the current inputs.
"""

from collections.abc import Sequence as _Sequence

from headrace._core import FireList, FireResult, OnOutput, Route, input_age
from headrace.accumulators import (
    Accumulator,
    State,
    batch_accumulator,
    passthrough,
    passthrough_accumulator,
    polling_accumulator,
    state_accumulator,
    stream_accumulator,
)
from headrace.errors import (
    AccumulatorError,
    BackpressureError,
    CheckpointError,
    FireTimeoutError,
    GraphDefinitionError,
    HeadraceError,
    NodeError,
    PayloadError,
    SettingError,
    UncheckpointableError,
)
from headrace.clock import SimClock
from headrace.graph import ComputationGraph, Criteria, every, when_all, when_any
from headrace.replay import replay
from headrace.runtime import Runtime, on_output
from headrace.sources import StreamBackend, StreamConfig, StreamError, register_stream_backend
from headrace import testing  # hr.testing: run_graph, MemoryBroker, crash_check

_Sequence.register(FireList)

__version__ = "0.1.0"

__all__ = [
    "Accumulator",
    "AccumulatorError",
    "BackpressureError",
    "CheckpointError",
    "ComputationGraph",
    "Criteria",
    "FireList",
    "FireResult",
    "FireTimeoutError",
    "GraphDefinitionError",
    "HeadraceError",
    "NodeError",
    "OnOutput",
    "PayloadError",
    "Route",
    "Runtime",
    "SettingError",
    "SimClock",
    "State",
    "StreamBackend",
    "StreamConfig",
    "StreamError",
    "UncheckpointableError",
    "batch_accumulator",
    "every",
    "input_age",
    "on_output",
    "passthrough",
    "passthrough_accumulator",
    "polling_accumulator",
    "register_stream_backend",
    "replay",
    "state_accumulator",
    "stream_accumulator",
    "when_all",
    "when_any",
]
