"""The checkpoint codecs: exact round trips, refusals that name the culprit,
and corruption that is always detected."""

from __future__ import annotations

import collections
import decimal
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

import headrace as hr
from headrace import _core

CODECS = ["bincode", "msgpack", "json"]

leaves = (
    st.none()
    | st.booleans()
    | st.integers()  # arbitrary size
    | st.floats(allow_nan=False)
    | st.text()
    | st.binary()
)
values = st.recursive(
    leaves,
    lambda kids: st.lists(kids, max_size=4)
    | st.lists(kids, max_size=4).map(tuple)
    | st.dictionaries(st.text(max_size=8), kids, max_size=4),
    max_leaves=30,
)


def same(a, b) -> bool:
    """Equality that also checks types all the way down (1 == 1.0 == True otherwise)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, float) and math.isnan(a):
        return math.isnan(b)
    return bool(a == b)


@pytest.mark.parametrize("codec", CODECS)
@given(value=values)
def test_round_trip_is_exact(codec, value) -> None:
    back = _core.decode_checkpoint(_core.encode_checkpoint(value, codec))
    assert same(back, value)


@pytest.mark.parametrize("codec", CODECS)
def test_special_floats_and_dollar_keys(codec) -> None:
    value = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf, "$int": "7", "$bytes": [1]}
    assert same(_core.decode_checkpoint(_core.encode_checkpoint(value, codec)), value)


def test_json_codec_is_readable() -> None:
    blob = _core.encode_checkpoint({"qty": 5, "side": "buy", "fills": [1.5, None]}, "json")
    assert blob[16:] == b'{"qty":5,"side":"buy","fills":[1.5,null]}'


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"a": [1, decimal.Decimal("1.5")]}, r"state\['a'\]\[1\]: type Decimal cannot be checkpointed"),
        ({1: "x"}, "dict key 1 has type int"),
        (collections.defaultdict(int), "type defaultdict cannot be checkpointed"),
        ({"s": {1, 2}}, "type set cannot be checkpointed"),
        (object(), "type object cannot be checkpointed"),
    ],
)
def test_unsupported_values_are_refused_by_path_and_type(value, message) -> None:
    with pytest.raises(hr.CheckpointError, match=message):
        _core.encode_checkpoint(value, component="state")


def test_every_single_bit_flip_is_detected() -> None:
    blob = _core.encode_checkpoint({"book": [100.5, 100.7], "n": 3, "id": b"\x00\x01"}, "bincode")
    for bit in range(len(blob) * 8):
        bad = bytearray(blob)
        bad[bit // 8] ^= 1 << (bit % 8)
        with pytest.raises(hr.CheckpointError):
            _core.decode_checkpoint(bytes(bad), component="acc:book")


def test_corruption_errors_name_the_component() -> None:
    blob = _core.encode_checkpoint([1, 2, 3])
    with pytest.raises(hr.CheckpointError, match="component 'reactor'.*truncated"):
        _core.decode_checkpoint(blob[:-1], component="reactor")
    with pytest.raises(hr.CheckpointError, match="bad magic"):
        _core.decode_checkpoint(b"garbage", component="reactor")


def test_deep_nesting_is_refused_not_a_crash() -> None:
    value: list = []
    for _ in range(1000):
        value = [value]
    with pytest.raises(hr.CheckpointError, match="nested deeper"):
        _core.encode_checkpoint(value)


@pytest.mark.parametrize("codec", ["bincode", "msgpack", "json"])
def test_ints_longer_than_decimal_conversion_allows(codec: str) -> None:
    # Python refuses str() of ints over 4300 digits; such ints are kept as hex.
    for value in (1 << 20_000, -(3**12_000), 10**4299):
        data = _core.encode_checkpoint({"v": value}, codec)
        assert _core.decode_checkpoint(data) == {"v": value}
