"""The input journal's storage: round trip, torn tails, reopening, rotation,
retention, corruption and hostile files."""

from __future__ import annotations

import os
import resource
import struct
import tempfile
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from headrace.errors import JournalError, SettingError
from headrace.journal import MAX_RECORD_BYTES, JournalEntry, JournalWriter, read_journal

ACCS = ["quotes", "trades"]
PREFACE = 12  # magic and version


def segments(path: Path) -> list[Path]:
    return sorted(p for p in path.iterdir() if p.suffix == ".hrj")


def frames(segment: Path) -> tuple[int, list[tuple[int, int]]]:
    """The header's end and the (start, end) of each record frame."""
    data = segment.read_bytes()
    (header_len,) = struct.unpack_from("<I", data, PREFACE)
    at = PREFACE + 8 + header_len
    header_end, out = at, []
    while at < len(data):
        (n,) = struct.unpack_from("<I", data, at)
        out.append((at, at + 8 + n))
        at += 8 + n
    return header_end, out


def write(path: Path, n: int, start: int = 1, **options: object) -> list[JournalEntry]:
    """Appends events start..start+n-1 and returns what reading them should give."""
    expected = []
    with JournalWriter(path, "g", ACCS, **options) as w:  # type: ignore[arg-type]
        for i in range(start, start + n):
            payload = f"event-{i}".encode()
            position = ("ticks", i % 3, i * 10) if i % 2 else None
            assert w.append_event(i % 2, payload, i * 1_000, position) == i
            expected.append(JournalEntry(i, i * 1_000, "event", ACCS[i % 2], payload, position))
    return expected


names = st.text(st.characters(codec="utf-8"), min_size=1, max_size=12)
positions = st.none() | st.tuples(names, st.integers(-(2**31), 2**31 - 1), st.integers(-(2**63), 2**63 - 1))
times = st.integers(-(2**63), 2**63 - 1)


@st.composite
def journals(draw: st.DrawFn) -> tuple[str, list[str], list[tuple[str, int, bytes, int, tuple[str, int, int] | None]]]:
    accumulators = draw(st.lists(names, min_size=1, max_size=5, unique=True))
    record = st.one_of(
        st.tuples(
            st.just("event"),
            st.integers(0, len(accumulators) - 1),
            st.binary(max_size=300),
            times,
            positions,
        ),
        st.tuples(st.sampled_from(["advance", "settle"]), st.just(0), st.just(b""), times, st.none()),
    )
    return draw(names), accumulators, draw(st.lists(record, max_size=60))


@given(journal=journals(), segment_bytes=st.sampled_from([150, 1000, 64 << 20]), fsync=st.sampled_from(["never", "batch", 0.005]))
def test_any_records_round_trip(
    journal: tuple[str, list[str], list[tuple[str, int, bytes, int, tuple[str, int, int] | None]]],
    segment_bytes: int,
    fsync: str | float,
) -> None:
    graph, accumulators, records = journal
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "j"
        expected = []
        with JournalWriter(path, graph, accumulators, segment_bytes=segment_bytes, fsync=fsync) as w:
            for i, (kind, acc, payload, time_ns, position) in enumerate(records, start=1):
                if kind == "event":
                    seq = w.append_event(acc, payload, time_ns, position)
                    expected.append(JournalEntry(i, time_ns, "event", accumulators[acc], payload, position))
                elif kind == "advance":
                    seq = w.append_advance(time_ns)
                    expected.append(JournalEntry(i, time_ns, "advance", None, b"", None))
                else:
                    seq = w.append_settle(time_ns)
                    expected.append(JournalEntry(i, time_ns, "settle", None, b"", None))
                assert seq == i
        reader = read_journal(path)
        assert list(reader) == expected
        assert reader.status == "clean" and reader.torn is None
        assert reader.graph == graph and reader.accumulators == accumulators
        for entry in expected:
            assert entry.time == entry.time_ns / 1e9
        from_seq = len(expected) // 2 + 1
        assert list(read_journal(path, from_seq)) == expected[from_seq - 1 :]


@given(n=st.integers(1, 20), data=st.data())
def test_a_torn_tail_reads_as_everything_before_it_and_the_writer_continues(n: int, data: st.DataObject) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "j"
        expected = write(path, n)
        (segment,) = segments(path)
        header_end, spans = frames(segment)
        whole = segment.read_bytes()
        cut = data.draw(st.integers(header_end, len(whole) - 1), label="cut")
        segment.write_bytes(whole[:cut])
        kept = [e for e, (_, end) in zip(expected, spans) if end <= cut]
        boundary = cut in {end for _, end in spans} or cut == header_end

        reader = read_journal(path)
        assert list(reader) == kept
        if boundary:
            assert (reader.status, reader.torn) == ("clean", None)
        else:
            assert reader.status == "torn"
            assert reader.torn == (str(segment), spans[len(kept)][0])

        with JournalWriter(path, "g", ACCS) as w:
            if boundary:
                assert w.truncated is None
            else:
                assert w.truncated == (str(segment), spans[len(kept)][0], cut - spans[len(kept)][0])
            assert w.stats()["next_seq"] == len(kept) + 1
        more = write(path, 3, start=len(kept) + 1)
        reader = read_journal(path)
        assert list(reader) == kept + more
        assert reader.status == "clean"


def test_reopening_continues_after_the_last_record(tmp_path: Path) -> None:
    first = write(tmp_path / "j", 5)
    second = write(tmp_path / "j", 5, start=6)
    with JournalWriter(tmp_path / "j", "g", ACCS) as w:
        assert w.append_advance(99) == 11
        assert w.append_settle(100) == 12
    entries = list(read_journal(tmp_path / "j"))
    assert entries[:10] == first + second
    assert [(e.seq, e.kind, e.accumulator) for e in entries[10:]] == [(11, "advance", None), (12, "settle", None)]
    assert len(segments(tmp_path / "j")) == 1


def test_rotation_and_retention_keep_the_newest_segments(tmp_path: Path) -> None:
    with JournalWriter(tmp_path / "all", "g", ACCS, segment_bytes=300) as w:
        for i in range(100):
            w.append_event(0, b"x" * 20, i)
        w.flush()
        stats = w.stats()
    files = segments(tmp_path / "all")
    assert len(files) == stats["segments"] == stats["segments_created"] + 1 > 5
    assert all(f.stat().st_size <= 300 for f in files)
    assert [e.seq for e in read_journal(tmp_path / "all")] == list(range(1, 101))
    assert files[0].name == "00000000000000000001.hrj"

    with JournalWriter(tmp_path / "kept", "g", ACCS, segment_bytes=300, keep_segments=2) as w:
        for i in range(100):
            w.append_event(0, b"x" * 20, i)
        w.flush()
        stats = w.stats()
    assert len(segments(tmp_path / "kept")) == stats["segments"] == 2
    assert stats["segments_deleted"] == stats["segments_created"] - 1
    seqs = [e.seq for e in read_journal(tmp_path / "kept")]
    assert seqs == list(range(seqs[0], 101)) and seqs[0] > 1

    with JournalWriter(tmp_path / "bytes", "g", ACCS, segment_bytes=300, keep_bytes=1000) as w:
        for i in range(100):
            w.append_event(0, b"x" * 20, i)
    assert sum(f.stat().st_size for f in segments(tmp_path / "bytes")) <= 1000
    assert [e.seq for e in read_journal(tmp_path / "bytes")][-1] == 100


def test_flush_makes_appends_readable_while_the_writer_is_open(tmp_path: Path) -> None:
    for fsync in ("never", "batch", 3600.0):
        path = tmp_path / str(fsync)
        with JournalWriter(path, "g", ACCS, fsync=fsync) as w:
            for i in range(1, 301):
                w.append_event(1, b"p", i)
                if i % 100 == 0:
                    w.flush(timeout=30)
                    stats = w.stats()
                    assert stats["written_seq"] == i and stats["buffered_bytes"] == 0
                    if fsync != "never":
                        assert stats["synced_seq"] == i
                    assert [e.seq for e in read_journal(path)] == list(range(1, i + 1))


def test_corruption_in_the_middle_names_the_file_and_offset(tmp_path: Path) -> None:
    path = tmp_path / "j"
    write(path, 6)
    (segment,) = segments(path)
    _, spans = frames(segment)
    data = bytearray(segment.read_bytes())
    data[spans[2][0] + 12] ^= 0xFF
    segment.write_bytes(bytes(data))
    seen = []
    with pytest.raises(JournalError) as caught:
        for entry in read_journal(path):
            seen.append(entry.seq)
    assert seen == [1, 2]
    assert caught.value.path == str(segment) and caught.value.offset == spans[2][0]
    assert segment.name in str(caught.value) and str(spans[2][0]) in str(caught.value)
    with pytest.raises(JournalError, match="corrupt"):
        JournalWriter(path, "g", ACCS)


def test_damage_in_an_earlier_segment_is_corruption_not_a_torn_tail(tmp_path: Path) -> None:
    path = tmp_path / "j"
    write(path, 40, segment_bytes=300)
    first = segments(path)[0]
    first.write_bytes(first.read_bytes()[:-3])
    with pytest.raises(JournalError) as caught:
        list(read_journal(path))
    assert caught.value.path == str(first)


def test_a_path_that_is_a_file_is_refused(tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.write_text("x")
    with pytest.raises(JournalError, match="not a directory") as caught:
        JournalWriter(plain, "g", ACCS)
    assert caught.value.path == str(plain)
    with pytest.raises(JournalError, match="not a directory"):
        read_journal(plain)
    with pytest.raises(JournalError):
        read_journal(tmp_path / "absent")


def test_a_segment_with_a_wrong_magic_or_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "j"
    path.mkdir()
    segment = path / "00000000000000000001.hrj"
    segment.write_bytes(b"PK\x03\x04 not a journal at all")
    with pytest.raises(JournalError, match="bad magic") as caught:
        list(read_journal(path))
    assert caught.value.path == str(segment) and caught.value.offset == 0
    with pytest.raises(JournalError, match="bad magic"):
        JournalWriter(path, "g", ACCS)
    segment.write_bytes(b"HRJOURNL" + struct.pack("<I", 7))
    with pytest.raises(JournalError, match="version 7"):
        list(read_journal(path))


def max_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def test_huge_claimed_lengths_are_damage_and_never_allocated(tmp_path: Path) -> None:
    before = max_rss_mib()
    path = tmp_path / "j"
    path.mkdir()
    segment = path / "00000000000000000001.hrj"
    # A header frame claiming 4 GiB: at the end of the last segment, a torn write.
    segment.write_bytes(b"HRJOURNL" + struct.pack("<III", 1, 0xFFFF_FFFF, 0) + b"\x00" * 64)
    reader = read_journal(path)
    assert list(reader) == [] and reader.status == "torn"
    # A CRC-valid header claiming a billion accumulator names.
    body = struct.pack("<QI", 1, 1) + b"g" + struct.pack("<I", 1_000_000_000)
    crc = _crc32c(body)
    segment.write_bytes(b"HRJOURNL" + struct.pack("<III", 1, len(body), crc) + body)
    with pytest.raises(JournalError, match="accumulator names"):
        list(read_journal(path))
    segment.unlink()

    # A record length over MAX_RECORD_BYTES: torn at the tail, corrupt in the middle.
    write(path, 4)
    (segment,) = segments(path)
    _, spans = frames(segment)
    whole = segment.read_bytes()
    for index, (at, _) in enumerate(spans):
        for claimed in (MAX_RECORD_BYTES + 1, 0xFFFF_FFFF, 2**31):
            data = bytearray(whole)
            struct.pack_into("<I", data, at, claimed)
            segment.write_bytes(bytes(data))
            if index == len(spans) - 1:
                reader = read_journal(path)
                assert [e.seq for e in reader] == [1, 2, 3] and reader.torn == (str(segment), at)
            else:
                with pytest.raises(JournalError) as caught:
                    list(read_journal(path))
                assert caught.value.offset == at
    assert max_rss_mib() - before < 64


def _crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli), bit by bit: only to forge a test header."""
    crc = 0xFFFF_FFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F6_3B78 if crc & 1 else 0)
    return crc ^ 0xFFFF_FFFF


def test_bad_appends_and_options_are_refused(tmp_path: Path) -> None:
    with JournalWriter(tmp_path / "j", "g", ACCS) as w:
        with pytest.raises(JournalError, match="accumulator index 2"):
            w.append_event(2, b"", 0)
        with pytest.raises(JournalError, match="MAX_RECORD_BYTES"):
            w.append_event(0, b"\x00" * MAX_RECORD_BYTES, 0)
        assert w.append_event(0, b"ok", 0) == 1
    with pytest.raises(JournalError, match="closed"):
        w.append_advance(0)
    w.close()
    with pytest.raises(JournalError, match="belongs to graph 'g'"):
        JournalWriter(tmp_path / "j", "other", ACCS)
    for bad in ({"fsync": "sometimes"}, {"fsync": -1.0}, {"fsync": 0}, {"keep_segments": 0}, {"segment_bytes": 0}):
        with pytest.raises(SettingError):
            JournalWriter(tmp_path / "k", "g", ACCS, **bad)  # type: ignore[arg-type]
    with pytest.raises(SettingError):
        JournalWriter(tmp_path / "k", "g", ACCS, append_timeout=-1.0)


def test_new_accumulators_start_a_segment_and_names_follow_it(tmp_path: Path) -> None:
    path = tmp_path / "j"
    write(path, 2)
    with JournalWriter(path, "g", ["trades"]) as w:
        w.append_event(0, b"t", 5)
    assert [(e.seq, e.accumulator) for e in read_journal(path)] == [(1, "trades"), (2, "quotes"), (3, "trades")]
    assert len(segments(path)) == 2


def test_a_small_buffer_applies_back_pressure_without_losing_records(tmp_path: Path) -> None:
    path = tmp_path / "j"
    expected = write(path, 3000, buffer_bytes=64, fsync="never")
    assert list(read_journal(path)) == expected


def test_paths_may_be_strings_or_pathlike(tmp_path: Path) -> None:
    with JournalWriter(str(tmp_path / "j"), "g", ACCS) as w:
        w.append_event(0, b"a", 1)
        assert w.path == str(tmp_path / "j")
    assert [e.payload for e in read_journal(os.fspath(tmp_path / "j"))] == [b"a"]


def test_a_failed_background_write_is_raised_by_later_calls(tmp_path: Path) -> None:
    import shutil

    path = tmp_path / "j"
    w = JournalWriter(path, "g", ACCS, segment_bytes=300, fsync="never")
    w.append_event(0, b"first", 1)
    w.flush()
    shutil.rmtree(path)  # the next rotation cannot create its segment
    with pytest.raises(JournalError, match="were not written") as caught:
        for i in range(200):
            w.append_event(0, b"x" * 40, i)
            w.flush()
    assert caught.value.path is not None and caught.value.path.startswith(str(path))
    with pytest.raises(JournalError, match="were not written"):
        w.close()
