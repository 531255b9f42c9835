"""Raw payload bytes: JSON and msgpack decoding, and undecodable input."""

from __future__ import annotations

import msgpack
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

import headrace as hr

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(), children, max_size=5),
    max_leaves=20,
)


def echo_graph(codec: str = "json") -> hr.ComputationGraph:
    acc = hr.passthrough_accumulator(name="book", codec=codec)(lambda e: {"v": e})  # type: ignore[arg-type]
    g = hr.ComputationGraph("g", accumulators=[acc], input_strategy="sequential")
    g.node(name="out")(lambda book: book["v"])
    return g


@given(value=json_values)
def test_json_bytes_decode_to_the_same_value(value) -> None:
    with hr.Runtime(echo_graph()) as rt:
        result = rt.push_bytes("book", orjson.dumps(value))
        assert result is not None and result.outputs["out"] == value


@given(value=json_values)
def test_msgpack_bytes_decode_to_the_same_value(value) -> None:
    with hr.Runtime(echo_graph("msgpack")) as rt:
        result = rt.push_bytes("book", msgpack.packb(value))
        assert result is not None and result.outputs["out"] == value
        # The per-call codec overrides the accumulator's.
        result = rt.push_bytes("book", orjson.dumps(value), codec="json")
        assert result is not None and result.outputs["out"] == value


def test_undecodable_json_names_the_accumulator_and_offset(mode) -> None:
    fires: list[hr.FireResult] = []
    with hr.Runtime(echo_graph(), mode=mode, on_fire=fires.append) as rt:
        rt.push_bytes("book", b'{"a": 1}')
        with pytest.raises(hr.PayloadError) as info:
            rt.push_bytes("book", b'{"a": 1,, }')
        err = info.value
        assert err.accumulator == "book" and err.offset == 8 and err.codec == "json"
        assert "accumulator 'book'" in str(err) and "at byte 8" in str(err)
        assert isinstance(err.__cause__, ValueError)
        rt.push_bytes("book", b'{"b": 2}')
        rt.drain(timeout=5)
    assert [f.outputs["out"] for f in fires] == [{"a": 1}, {"b": 2}]


def test_msgpack_with_trailing_bytes_is_refused() -> None:
    with hr.Runtime(echo_graph("msgpack")) as rt:
        with pytest.raises(hr.PayloadError, match="trailing") as info:
            rt.push_bytes("book", msgpack.packb(1) + b"GARBAGE")
        assert info.value.offset == 1
        with pytest.raises(hr.PayloadError):
            rt.push_bytes("book", b"\xc1")


def test_unknown_codec_is_a_clear_error() -> None:
    with hr.Runtime(echo_graph()) as rt, pytest.raises(ValueError, match="codec must be"):
        rt.push_bytes("book", b"1", codec="xml")
