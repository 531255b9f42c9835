"""The checkpoint codecs: exact round trips, refusals that name the culprit,
and corruption that is always detected."""

from __future__ import annotations

import collections
import datetime as dt
import decimal
import fractions
import math
import struct
import uuid
import zoneinfo

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


def time_identity(v: dt.datetime | dt.time) -> tuple[object, ...]:
    """Everything that makes two datetimes or times alike, not just equal:
    the wall fields, fold, and the zone (its type, key, offset and name)."""
    tz = v.tzinfo
    zone: object = None
    if isinstance(tz, zoneinfo.ZoneInfo):
        zone = ("zone", tz.key, v.utcoffset())
    elif tz is not None:
        zone = (type(tz), tz.utcoffset(None), tz.tzname(None))
    return (v.replace(tzinfo=None).isoformat(), v.fold, zone)


def same(a, b) -> bool:
    """Equality that also checks types all the way down (1 == 1.0 == True
    otherwise), and that dates, times and decimals are alike, not just equal."""
    if type(a) is not type(b):
        return False
    if isinstance(a, (dt.datetime, dt.time)):
        return time_identity(a) == time_identity(b)
    if isinstance(a, decimal.Decimal):
        return str(a) == str(b)  # sign, exponent, NaN payload; NaN != NaN otherwise
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
        ({"a": [1, fractions.Fraction(1, 3)]}, r"state\['a'\]\[1\]: type Fraction cannot be checkpointed"),
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


# ---- dates, times, timedeltas, decimals, UUIDs ----------------------------

ZONES = ["America/New_York", "Europe/London", "Australia/Lord_Howe", "Asia/Kolkata", "UTC"]
EXTREME_OFFSETS = [
    dt.timedelta(hours=14),
    dt.timedelta(hours=-12),
    dt.timedelta(hours=5, minutes=30, seconds=15),
    dt.timedelta(seconds=-1),
    dt.timedelta(microseconds=1),
    dt.timedelta(days=1, microseconds=-1),
    -dt.timedelta(days=1, microseconds=-1),
]
time_zones = (
    st.none()
    | st.sampled_from(ZONES).map(zoneinfo.ZoneInfo)
    | st.sampled_from(EXTREME_OFFSETS).map(dt.timezone)
    | st.integers(-86_399_999_999, 86_399_999_999).map(lambda us: dt.timezone(dt.timedelta(microseconds=us)))
    | st.tuples(st.sampled_from(EXTREME_OFFSETS), st.text(min_size=1, max_size=8)).map(lambda a: dt.timezone(*a))
)
edge_decimals = st.sampled_from(
    ["-0", "0E-1000000000000000000", "1E+999999999999999999", "-9.99E-1999999999999999995", "1.2300",
     "sNaN", "-sNaN123", "NaN", "-NaN7", "Infinity", "-Infinity", "123456789012345678901234567890.5"]
).map(decimal.Decimal)  # fmt: skip
stdlib_leaves = (
    st.builds(
        lambda d, tz, fold: d.replace(tzinfo=tz, fold=fold),
        st.datetimes(min_value=dt.datetime.min, max_value=dt.datetime.max),
        time_zones,
        st.integers(0, 1),
    )
    | st.dates(min_value=dt.date.min, max_value=dt.date.max)
    | st.builds(lambda t, tz, fold: t.replace(tzinfo=tz, fold=fold), st.times(), time_zones, st.integers(0, 1))
    | st.timedeltas(min_value=dt.timedelta.min, max_value=dt.timedelta.max)
    | st.decimals(allow_nan=True, allow_infinity=True)
    | edge_decimals
    | st.uuids(allow_nil=True)
)
stdlib_values = st.recursive(
    stdlib_leaves | leaves,
    lambda kids: st.lists(kids, max_size=4)
    | st.lists(kids, max_size=4).map(tuple)
    | st.dictionaries(st.text(max_size=8), kids, max_size=4),
    max_leaves=12,
)


@pytest.mark.parametrize("codec", CODECS)
@given(value=stdlib_leaves)
def test_stdlib_values_round_trip_exactly(codec, value) -> None:
    back = _core.decode_checkpoint(_core.encode_checkpoint(value, codec))
    assert same(back, value), (back, value)


@pytest.mark.parametrize("codec", CODECS)
@given(value=stdlib_values)
def test_stdlib_values_round_trip_nested(codec, value) -> None:
    back = _core.decode_checkpoint(_core.encode_checkpoint(value, codec))
    assert same(back, value), (back, value)


NEW_YORK = zoneinfo.ZoneInfo("America/New_York")
TRADING: dict[str, object] = {
    # The second 01:30 of the DST change: only fold tells it from the first.
    "at": dt.datetime(2024, 11, 3, 1, 30, fold=1, tzinfo=NEW_YORK),
    "session": (dt.date(2024, 11, 4), dt.time(9, 30, tzinfo=dt.timezone(dt.timedelta(hours=-5), "EST"))),
    "expiry": dt.datetime.max.replace(tzinfo=dt.timezone(dt.timedelta(hours=14))),
    "listed": [dt.datetime.min.replace(tzinfo=dt.timezone(-dt.timedelta(hours=12))), dt.datetime(2024, 1, 1, fold=1)],
    "hold": dt.timedelta(days=-1, microseconds=1),
    "px": decimal.Decimal("-0.00100"),
    "limits": [decimal.Decimal("sNaN12"), decimal.Decimal("-0E+999999999999999999")],
    "order": uuid.UUID("12345678-9abc-def0-0001-0203040506ff"),
}


@pytest.mark.parametrize("codec", CODECS)
def test_trading_values_round_trip_with_their_zones(codec) -> None:
    back = _core.decode_checkpoint(_core.encode_checkpoint(TRADING, codec))
    assert same(back, TRADING)
    assert back["at"].tzinfo is NEW_YORK  # the zone itself, so DST stays right
    assert back["at"].utcoffset() == dt.timedelta(hours=-5)  # fold=1: after the change
    assert back["session"][1].tzname() == "EST"


def test_json_spells_dates_and_times_readably() -> None:
    value = {
        "at": dt.datetime(2024, 3, 8, 9, 30, tzinfo=NEW_YORK),
        "fixed": dt.datetime(2024, 3, 8, 9, 30, 0, 250000, tzinfo=dt.timezone(dt.timedelta(hours=5, minutes=30))),
        "day": dt.date(2024, 3, 8),
        "hold": dt.timedelta(minutes=-1),
        "px": decimal.Decimal("101.250"),
        "id": uuid.UUID(int=1),
    }
    assert _core.encode_checkpoint(value, "json")[16:] == (
        b'{"at":{"$datetime":"2024-03-08T09:30:00[America/New_York]"},'
        b'"fixed":{"$datetime":"2024-03-08T09:30:00.250000+05:30"},'
        b'"day":{"$date":"2024-03-08"},'
        b'"hold":{"$timedelta":[-1,86340,0]},'
        b'"px":{"$decimal":"101.250"},'
        b'"id":{"$uuid":"00000000-0000-0000-0000-000000000001"}}'
    )


@pytest.mark.parametrize("codec", CODECS)
def test_a_dict_that_looks_like_a_tag_stays_a_dict(codec) -> None:
    value = {"$datetime": "2024-03-08T09:30:00", "$uuid": [1], "$decimal": "1"}
    assert same(_core.decode_checkpoint(_core.encode_checkpoint(value, codec)), value)


class Eastern(dt.tzinfo):
    def utcoffset(self, d: dt.datetime | None) -> dt.timedelta:
        return dt.timedelta(hours=-5)


class Stamp(dt.datetime):
    pass


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"t": [dt.datetime(2024, 1, 1, tzinfo=Eastern())]}, r"state\['t'\]\[0\]: tzinfo type Eastern cannot be checkpointed"),
        ({"t": dt.time(1, tzinfo=Eastern())}, r"state\['t'\]: tzinfo type Eastern cannot be checkpointed"),
        ({"t": Stamp(2024, 1, 1)}, r"state\['t'\]: type Stamp cannot be checkpointed"),
    ],
)
def test_unsupported_zones_and_subclasses_are_refused_by_path_and_type(value, message) -> None:
    with pytest.raises(hr.CheckpointError, match=message):
        _core.encode_checkpoint(value, component="state")


def test_a_zoneinfo_outside_the_cache_is_kept_by_its_key() -> None:
    value = dt.datetime(2024, 7, 1, tzinfo=zoneinfo.ZoneInfo.no_cache("Europe/London"))
    back = _core.decode_checkpoint(_core.encode_checkpoint(value))
    assert same(back, value)
    assert back.utcoffset() == dt.timedelta(hours=1)


@pytest.mark.parametrize("codec", CODECS)
def test_every_bit_flip_in_stdlib_values_is_detected(codec) -> None:
    blob = _core.encode_checkpoint({"at": TRADING["at"], "px": TRADING["px"], "id": TRADING["order"]}, codec)
    for bit in range(len(blob) * 8):
        bad = bytearray(blob)
        bad[bit // 8] ^= 1 << (bit % 8)
        with pytest.raises(hr.CheckpointError):
            _core.decode_checkpoint(bytes(bad))


def trading_graph() -> hr.ComputationGraph:
    @hr.stream_accumulator(topic="orders", state={"orders": []})
    def book(e, state):
        state.value["orders"].append(e)
        return list(state.value["orders"])

    g = hr.ComputationGraph("trading", accumulators=[book], criteria=hr.when_any(book))

    @g.node
    def orders(book):
        return book

    return g


@pytest.mark.parametrize("codec", CODECS)
def test_a_restarted_graph_gets_its_trading_values_back(store_url, tenant, codec) -> None:
    options = {"store": store_url, "tenant": tenant, "checkpoint_codec": codec, "sources": False}
    with hr.Runtime(trading_graph(), **options) as rt:
        rt.push("book", TRADING)
        rt.drain(timeout=10)
    fires: list[hr.FireResult] = []
    with hr.Runtime(trading_graph(), on_fire=fires.append, **options) as rt:
        rt.push("book", {"n": 2})
        rt.drain(timeout=10)
    restored = fires[-1].outputs["orders"]
    assert same(restored, [TRADING, {"n": 2}])
    assert restored[0]["at"].utcoffset() == dt.timedelta(hours=-5)
    assert restored[0]["expiry"].utcoffset() == dt.timedelta(hours=14)


def test_a_zone_missing_on_the_restoring_machine_is_a_checkpoint_error(tmp_path) -> None:
    # A zone that exists only while encoding: a one-type TZif file (UTC) under a made-up key.
    counts = struct.pack(">6l", 0, 0, 0, 0, 1, 4)  # isut, isstd, leap, times, types, chars
    (tmp_path / "Test").mkdir()
    (tmp_path / "Test" / "Atlantis").write_bytes(b"TZif" + bytes(16) + counts + struct.pack(">lBB", 0, 0, 0) + b"UTC\0")
    zoneinfo.reset_tzpath([str(tmp_path)])
    try:
        blob = _core.encode_checkpoint({"at": dt.datetime(2024, 1, 1, tzinfo=zoneinfo.ZoneInfo("Test/Atlantis"))})
    finally:
        zoneinfo.reset_tzpath()
        zoneinfo.ZoneInfo.clear_cache()
    with pytest.raises(hr.CheckpointError, match="time zone 'Test/Atlantis' cannot be loaded"):
        _core.decode_checkpoint(blob)
