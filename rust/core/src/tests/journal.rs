//! The journal's storage: round trip, rotation, retention, torn tails,
//! corruption, reopening, flush.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::event::SourcePosition;
use crate::journal::*;

/// A directory removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        static N: AtomicU64 = AtomicU64::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("headrace-journal-test-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }
    fn journal(&self) -> PathBuf {
        self.0.join("journal")
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn accs() -> Vec<String> {
    vec!["quotes".into(), "trades".into()]
}

fn open(dir: &Path, options: WriterOptions) -> JournalWriter {
    JournalWriter::open(dir, "g", accs(), options).unwrap()
}

fn small(segment_bytes: u64) -> WriterOptions {
    WriterOptions { segment_bytes, ..WriterOptions::default() }
}

fn payload(i: u64) -> Vec<u8> {
    format!("event-{i}").into_bytes()
}

/// Appends events 1..=n (seq i carries payload i, time i*1000).
fn write_events(w: &JournalWriter, from: u64, to: u64) {
    for i in from..=to {
        let pos = (i % 3 == 0).then(|| SourcePosition::new("ticks", (i % 4) as i32, i as i64 * 10));
        let seq = w.append_event((i % 2) as u32, i as i64 * 1000, &payload(i), pos.as_ref()).unwrap();
        assert_eq!(seq, i);
    }
}

fn read_all(dir: &Path, from_seq: u64) -> (Vec<JournalRecord>, ReadStatus) {
    let mut r = JournalReader::open(dir, from_seq).unwrap();
    let records = r.by_ref().collect::<Result<Vec<_>, _>>().unwrap();
    (records, r.status().cloned().unwrap())
}

fn read_err(dir: &Path) -> (usize, JournalError) {
    let mut r = JournalReader::open(dir, 0).unwrap();
    let mut n = 0;
    for item in r.by_ref() {
        match item {
            Ok(_) => n += 1,
            Err(e) => return (n, e),
        }
    }
    panic!("read {n} records and ended {:?} without an error", r.status());
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    v.sort();
    v
}

fn seqs(records: &[JournalRecord]) -> Vec<u64> {
    records.iter().map(|r| r.seq).collect()
}

#[test]
fn records_round_trip_with_kinds_positions_and_header() {
    let t = TempDir::new();
    let w = open(&t.journal(), WriterOptions::default());
    assert_eq!(w.report().next_seq, 1);
    let pos = SourcePosition::new("tópic", -1, i64::MIN);
    assert_eq!(w.append_event(1, -5, b"\x00\xffraw", Some(&pos)).unwrap(), 1);
    assert_eq!(w.append_advance(i64::MAX).unwrap(), 2);
    assert_eq!(w.append_settle(7).unwrap(), 3);
    assert_eq!(w.append_event(0, 8, b"", None).unwrap(), 4);
    w.close().unwrap();

    let mut r = JournalReader::open(t.journal(), 0).unwrap();
    let records: Vec<JournalRecord> = r.by_ref().map(Result::unwrap).collect();
    assert_eq!(r.status(), Some(&ReadStatus::Clean));
    let header = r.header().unwrap();
    assert_eq!((header.graph.as_str(), &header.accumulators, header.first_seq), ("g", &accs(), 1));
    let expected = vec![
        JournalRecord { seq: 1, time_ns: -5, kind: RecordKind::Event, acc: 1, payload: b"\x00\xffraw".to_vec(), position: Some(pos) },
        JournalRecord { seq: 2, time_ns: i64::MAX, kind: RecordKind::Advance, acc: NO_ACCUMULATOR, payload: vec![], position: None },
        JournalRecord { seq: 3, time_ns: 7, kind: RecordKind::Settle, acc: NO_ACCUMULATOR, payload: vec![], position: None },
        JournalRecord { seq: 4, time_ns: 8, kind: RecordKind::Event, acc: 0, payload: vec![], position: None },
    ];
    assert_eq!(records, expected);
    assert_eq!(segments(&t.journal()), vec![t.journal().join("00000000000000000001.hrj")]);
}

#[test]
fn from_seq_skips_earlier_records_and_whole_segments() {
    let t = TempDir::new();
    let w = open(&t.journal(), small(300));
    write_events(&w, 1, 60);
    w.close().unwrap();
    let files = segments(&t.journal());
    assert!(files.len() > 3, "{files:?}");
    let (records, _) = read_all(&t.journal(), 45);
    assert_eq!(seqs(&records), (45..=60).collect::<Vec<_>>());
    // The first segment is skipped without being opened: damaging it changes nothing.
    fs::write(&files[0], b"not a segment").unwrap();
    let (again, status) = read_all(&t.journal(), 45);
    assert_eq!((again, status), (records, ReadStatus::Clean));
}

#[test]
fn rotation_keeps_segments_under_the_size_and_reads_across_them() {
    let t = TempDir::new();
    let w = open(&t.journal(), small(400));
    write_events(&w, 1, 200);
    w.flush(None).unwrap();
    let stats = w.stats();
    w.close().unwrap();
    let files = segments(&t.journal());
    assert_eq!(stats.segments, files.len());
    assert_eq!(stats.segments_created as usize, files.len() - 1);
    for f in &files {
        assert!(fs::metadata(f).unwrap().len() <= 400, "{f:?}");
    }
    let (records, status) = read_all(&t.journal(), 0);
    assert_eq!(status, ReadStatus::Clean);
    assert_eq!(seqs(&records), (1..=200).collect::<Vec<_>>());
    assert!(records.iter().all(|r| r.payload == payload(r.seq)));
    // Each file is named for its first record.
    let mut r = JournalReader::open(t.journal(), 0).unwrap();
    let mut firsts = vec![];
    while let Some(rec) = r.next() {
        let h = r.header().unwrap();
        if h.first_seq == rec.unwrap().seq {
            firsts.push(t.journal().join(segment_file_name(h.first_seq)));
        }
    }
    assert_eq!(firsts, files);
}

#[test]
fn a_record_larger_than_a_segment_gets_a_segment_of_its_own() {
    let t = TempDir::new();
    let w = open(&t.journal(), small(100));
    let big = vec![7u8; 500];
    w.append_event(0, 1, &big, None).unwrap();
    w.append_event(0, 2, &big, None).unwrap();
    w.close().unwrap();
    assert_eq!(segments(&t.journal()).len(), 2);
    let (records, _) = read_all(&t.journal(), 0);
    assert_eq!(records.iter().map(|r| r.payload.len()).collect::<Vec<_>>(), vec![500, 500]);
}

#[test]
fn retention_deletes_the_oldest_segments() {
    let t = TempDir::new();
    let w = open(&t.journal(), WriterOptions { keep_segments: Some(3), ..small(300) });
    write_events(&w, 1, 100);
    w.flush(None).unwrap();
    let stats = w.stats();
    w.close().unwrap();
    assert_eq!(segments(&t.journal()).len(), 3);
    assert_eq!(stats.segments, 3);
    assert_eq!(stats.segments_deleted, stats.segments_created - 2);
    let (records, status) = read_all(&t.journal(), 0);
    assert_eq!(status, ReadStatus::Clean);
    assert_eq!(records.last().unwrap().seq, 100);
    let first = records[0].seq;
    assert_eq!(seqs(&records), (first..=100).collect::<Vec<_>>());

    let t = TempDir::new();
    let w = open(&t.journal(), WriterOptions { keep_bytes: Some(1000), ..small(300) });
    write_events(&w, 1, 100);
    w.close().unwrap();
    let total: u64 = segments(&t.journal()).iter().map(|f| fs::metadata(f).unwrap().len()).sum();
    assert!(total <= 1000, "{total}");
    assert!(segments(&t.journal()).len() >= 3);
    assert_eq!(read_all(&t.journal(), 0).0.last().unwrap().seq, 100);
}

/// The offset at which each record of the (only) segment starts.
fn record_offsets(dir: &Path) -> Vec<u64> {
    let file = &segments(dir)[segments(dir).len() - 1];
    let bytes = fs::read(file).unwrap();
    let header_len = u32::from_le_bytes(bytes[12..16].try_into().unwrap()) as usize;
    let mut at = 12 + 8 + header_len;
    let mut out = vec![];
    while at < bytes.len() {
        out.push(at as u64);
        at += 8 + u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
    }
    out
}

#[test]
fn a_torn_last_record_is_dropped_at_every_cut_and_the_writer_continues() {
    let t = TempDir::new();
    let w = open(&t.journal(), WriterOptions::default());
    write_events(&w, 1, 5);
    w.close().unwrap();
    let file = segments(&t.journal())[0].clone();
    let whole = fs::read(&file).unwrap();
    let last = *record_offsets(&t.journal()).last().unwrap();
    for cut in last..whole.len() as u64 {
        fs::write(&file, &whole[..cut as usize]).unwrap();
        let (records, status) = read_all(&t.journal(), 0);
        assert_eq!(seqs(&records), vec![1, 2, 3, 4], "cut at {cut}");
        let expected = if cut == last { ReadStatus::Clean } else { ReadStatus::Torn { segment: file.clone(), offset: last } };
        assert_eq!(status, expected, "cut at {cut}");

        let w = open(&t.journal(), WriterOptions::default());
        let truncated = w.report().truncated.clone();
        let dropped = (cut > last).then(|| (file.clone(), last, cut - last));
        assert_eq!(truncated, dropped, "cut at {cut}");
        assert_eq!(w.report().next_seq, 5);
        write_events(&w, 5, 6);
        w.close().unwrap();
        let (records, status) = read_all(&t.journal(), 0);
        assert_eq!((seqs(&records), status), (vec![1, 2, 3, 4, 5, 6], ReadStatus::Clean), "cut at {cut}");
        // The records before the cut were kept byte for byte.
        assert_eq!(fs::read(&file).unwrap()[..last as usize], whole[..last as usize]);
    }
}

#[test]
fn a_torn_header_of_the_last_segment_is_dropped_and_restarted() {
    let t = TempDir::new();
    let w = open(&t.journal(), small(200));
    write_events(&w, 1, 20);
    w.close().unwrap();
    let files = segments(&t.journal());
    let last = files.last().unwrap().clone();
    let whole = fs::read(&last).unwrap();
    let (before, _) = {
        let mut r = JournalReader::open(t.journal(), 0).unwrap();
        let v: Vec<_> = r.by_ref().map(Result::unwrap).collect();
        (v, ())
    };
    let first_in_last: u64 = last.file_stem().unwrap().to_str().unwrap().parse().unwrap();
    let header_end = record_offsets(&t.journal())[0] as usize;
    for cut in 0..header_end {
        fs::write(&last, &whole[..cut]).unwrap();
        let (records, status) = read_all(&t.journal(), 0);
        assert_eq!(records, before[..(first_in_last - 1) as usize], "cut at {cut}");
        assert!(matches!(status, ReadStatus::Torn { ref segment, .. } if *segment == last), "cut at {cut}: {status:?}");
        let w = open(&t.journal(), small(200));
        assert_eq!(w.report().next_seq, first_in_last, "cut at {cut}");
        assert!(w.report().truncated.is_some());
        write_events(&w, first_in_last, 20);
        w.close().unwrap();
        assert_eq!(seqs(&read_all(&t.journal(), 0).0), (1..=20).collect::<Vec<_>>());
    }
}

/// Flips one byte of a file.
fn flip(file: &Path, at: u64) {
    let mut bytes = fs::read(file).unwrap();
    bytes[at as usize] ^= 0x40;
    fs::write(file, bytes).unwrap();
}

#[test]
fn a_crc_mismatch_in_the_last_record_is_torn_but_in_the_middle_is_corrupt() {
    let t = TempDir::new();
    let w = open(&t.journal(), WriterOptions::default());
    write_events(&w, 1, 5);
    w.close().unwrap();
    let file = segments(&t.journal())[0].clone();
    let offsets = record_offsets(&t.journal());
    let whole = fs::read(&file).unwrap();

    flip(&file, whole.len() as u64 - 3);
    let (records, status) = read_all(&t.journal(), 0);
    assert_eq!(seqs(&records), vec![1, 2, 3, 4]);
    assert_eq!(status, ReadStatus::Torn { segment: file.clone(), offset: offsets[4] });

    fs::write(&file, &whole).unwrap();
    flip(&file, offsets[2] + 20);
    let (n, err) = read_err(&t.journal());
    assert_eq!(n, 2);
    match &err {
        JournalError::Corrupt { segment, offset, .. } => assert_eq!((segment, *offset), (&file, offsets[2])),
        e => panic!("{e:?}"),
    }
    let message = err.to_string();
    assert!(message.contains("00000000000000000001.hrj") && message.contains(&offsets[2].to_string()), "{message}");
    // The writer refuses to continue a corrupt journal rather than cut valid records off.
    assert!(matches!(JournalWriter::open(t.journal(), "g", accs(), WriterOptions::default()), Err(JournalError::Corrupt { .. })));

    // A huge length: torn at the tail, corrupt in the middle; never allocated.
    fs::write(&file, &whole).unwrap();
    let mut bytes = whole.clone();
    bytes[offsets[4] as usize..offsets[4] as usize + 4].copy_from_slice(&u32::MAX.to_le_bytes());
    fs::write(&file, &bytes).unwrap();
    assert_eq!(read_all(&t.journal(), 0).1, ReadStatus::Torn { segment: file.clone(), offset: offsets[4] });
    let mut bytes = whole.clone();
    bytes[offsets[1] as usize..offsets[1] as usize + 4].copy_from_slice(&((MAX_RECORD_BYTES + 1) as u32).to_le_bytes());
    fs::write(&file, &bytes).unwrap();
    assert!(matches!(read_err(&t.journal()), (1, JournalError::Corrupt { offset, .. }) if offset == offsets[1]));
}

#[test]
fn damage_in_a_segment_that_is_not_the_last_is_corrupt() {
    let t = TempDir::new();
    let w = open(&t.journal(), small(300));
    write_events(&w, 1, 30);
    w.close().unwrap();
    let files = segments(&t.journal());
    let first = files[0].clone();
    let len = fs::metadata(&first).unwrap().len();
    // Cutting its last byte would be a torn tail in the last segment; here it is corruption.
    let bytes = fs::read(&first).unwrap();
    fs::write(&first, &bytes[..bytes.len() - 1]).unwrap();
    let (_, err) = read_err(&t.journal());
    assert!(matches!(err, JournalError::Corrupt { ref segment, .. } if *segment == first), "{err:?} ({len})");
    // A missing segment in the middle is a gap, not silently skipped.
    fs::write(&first, &bytes).unwrap();
    fs::remove_file(&files[1]).unwrap();
    let (_, err) = read_err(&t.journal());
    assert!(matches!(err, JournalError::Corrupt { ref segment, offset: 0, .. } if *segment == files[2]), "{err:?}");
}

#[test]
fn hostile_directories_and_files_are_refused_with_clear_errors() {
    let t = TempDir::new();
    let file = t.0.join("plain");
    fs::write(&file, b"x").unwrap();
    let err = JournalWriter::open(&file, "g", accs(), WriterOptions::default()).err().unwrap();
    assert!(matches!(err, JournalError::NotADirectory { .. }), "{err:?}");
    assert!(err.to_string().contains("not a directory"));
    assert!(matches!(JournalReader::open(&file, 0).err().unwrap(), JournalError::NotADirectory { .. }));
    assert!(matches!(JournalReader::open(t.0.join("absent"), 0).err().unwrap(), JournalError::Io { .. }));

    let dir = t.journal();
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join(segment_file_name(1)), b"NOTMAGIC\x01\x00\x00\x00rest").unwrap();
    let (_, err) = read_err(&dir);
    assert!(err.to_string().contains("bad magic"), "{err}");
    assert!(JournalWriter::open(&dir, "g", accs(), WriterOptions::default()).is_err());

    fs::write(dir.join(segment_file_name(1)), b"HRJOURNL\x09\x00\x00\x00").unwrap();
    assert!(matches!(read_err(&dir).1, JournalError::UnsupportedVersion { version: 9, .. }));

    // A header that claims a billion accumulator names is refused, not allocated.
    let mut h = b"HRJOURNL\x01\x00\x00\x00".to_vec();
    let mut body = 1u64.to_le_bytes().to_vec();
    body.extend_from_slice(&1u32.to_le_bytes());
    body.push(b'g');
    body.extend_from_slice(&1_000_000_000u32.to_le_bytes());
    h.extend_from_slice(&(body.len() as u32).to_le_bytes());
    h.extend_from_slice(&crc32c::crc32c(&body).to_le_bytes());
    h.extend_from_slice(&body);
    fs::write(dir.join(segment_file_name(1)), &h).unwrap();
    let (_, err) = read_err(&dir);
    assert!(err.to_string().contains("accumulator names"), "{err}");

    // Other files in the directory are not segments.
    let t2 = TempDir::new();
    let w = open(&t2.journal(), WriterOptions::default());
    write_events(&w, 1, 3);
    w.close().unwrap();
    fs::write(t2.journal().join("notes.txt"), b"hello").unwrap();
    fs::write(t2.journal().join("1.hrj"), b"hello").unwrap();
    assert_eq!(seqs(&read_all(&t2.journal(), 0).0), vec![1, 2, 3]);
}

#[test]
fn bad_appends_and_options_are_refused() {
    let t = TempDir::new();
    let w = open(&t.journal(), WriterOptions::default());
    assert!(matches!(w.append_event(2, 0, b"", None), Err(JournalError::UnknownAccumulator { index: 2, count: 2 })));
    let huge = vec![0u8; MAX_RECORD_BYTES];
    assert!(matches!(w.append_event(0, 0, &huge, None), Err(JournalError::RecordTooLarge { .. })));
    assert_eq!(w.append_event(0, 0, b"ok", None).unwrap(), 1, "refused appends take no seq");
    w.close().unwrap();
    assert!(matches!(w.append_advance(0), Err(JournalError::Closed)));
    w.close().unwrap();

    let graph = JournalWriter::open(t.journal(), "other", accs(), WriterOptions::default()).err().unwrap();
    assert!(matches!(graph, JournalError::GraphMismatch { .. }), "{graph:?}");
    for bad in [
        WriterOptions { segment_bytes: 0, ..Default::default() },
        WriterOptions { keep_segments: Some(0), ..Default::default() },
        WriterOptions { buffer_bytes: 0, ..Default::default() },
        WriterOptions { fsync: FsyncPolicy::Interval(Duration::ZERO), ..Default::default() },
    ] {
        assert!(matches!(JournalWriter::open(t.journal(), "g", accs(), bad), Err(JournalError::Setting { .. })));
    }
}

#[test]
fn new_accumulators_start_a_new_segment_and_each_maps_its_own_names() {
    let t = TempDir::new();
    let w = open(&t.journal(), WriterOptions::default());
    write_events(&w, 1, 2);
    w.close().unwrap();
    let w = JournalWriter::open(t.journal(), "g", vec!["trades".into()], WriterOptions::default()).unwrap();
    assert!(w.report().new_segment);
    assert_eq!(w.append_event(0, 9, b"x", None).unwrap(), 3);
    w.close().unwrap();
    let mut r = JournalReader::open(t.journal(), 0).unwrap();
    let mut named = vec![];
    while let Some(rec) = r.next() {
        let rec = rec.unwrap();
        named.push((rec.seq, r.header().unwrap().accumulators[rec.acc as usize].clone()));
    }
    assert_eq!(named, vec![(1, "trades".to_string()), (2, "quotes".to_string()), (3, "trades".to_string())]);
}

#[test]
fn flush_makes_every_earlier_append_readable_under_each_policy() {
    for fsync in [FsyncPolicy::Never, FsyncPolicy::EveryBatch, FsyncPolicy::Interval(Duration::from_secs(3600))] {
        let t = TempDir::new();
        let w = open(&t.journal(), WriterOptions { fsync, ..small(2000) });
        for round in 0..5u64 {
            write_events(&w, round * 40 + 1, round * 40 + 40);
            w.flush(Some(Duration::from_secs(30))).unwrap();
            let stats = w.stats();
            assert_eq!(stats.written_seq, round * 40 + 40, "{fsync:?}");
            assert_eq!(stats.buffered_bytes, 0);
            if fsync != FsyncPolicy::Never {
                assert_eq!(stats.synced_seq, round * 40 + 40, "{fsync:?}");
            }
            // Readable while the writer is still open.
            let (records, status) = read_all(&t.journal(), 0);
            assert_eq!((records.len() as u64, status), (round * 40 + 40, ReadStatus::Clean), "{fsync:?}");
        }
        w.close().unwrap();
    }
}

#[test]
fn a_small_buffer_makes_appends_wait_for_the_writer_without_losing_any() {
    let t = TempDir::new();
    let w = open(&t.journal(), WriterOptions { buffer_bytes: 128, fsync: FsyncPolicy::Never, ..small(4096) });
    write_events(&w, 1, 5000);
    w.close().unwrap();
    let (records, status) = read_all(&t.journal(), 0);
    assert_eq!((seqs(&records), status), ((1..=5000).collect::<Vec<_>>(), ReadStatus::Clean));
    assert!(records.iter().all(|r| r.payload == payload(r.seq)));
}

#[test]
fn a_failed_write_is_reported_by_every_later_call_never_dropped_silently() {
    let t = TempDir::new();
    let w = open(&t.journal(), WriterOptions { fsync: FsyncPolicy::Never, ..small(300) });
    write_events(&w, 1, 3);
    w.flush(None).unwrap();
    // The directory vanishes: the next rotation cannot create its segment.
    fs::remove_dir_all(t.journal()).unwrap();
    let mut failed = None;
    for i in 4..200u64 {
        match w.append_event(0, i as i64, &payload(i), None).and_then(|_| w.flush(None)) {
            Ok(()) => {}
            Err(e) => {
                failed = Some(e);
                break;
            }
        }
    }
    let err = failed.expect("the writer failed");
    assert!(matches!(&err, JournalError::WriterFailed { error, .. } if matches!(**error, JournalError::Io { op: "create", .. })), "{err:?}");
    assert!(err.to_string().contains("were not written"), "{err}");
    assert!(matches!(w.append_advance(0), Err(JournalError::WriterFailed { .. })));
    assert!(matches!(w.close(), Err(JournalError::WriterFailed { .. })));
}
