//! Appending to a journal off the hot path.
//!
//! An append encodes its record into a shared in-memory buffer under a mutex
//! and returns; it never touches a file. A background thread swaps the buffer
//! for an empty one and writes it (double buffering), rotating and syncing
//! as configured. The buffer is bounded by [`WriterOptions::buffer_bytes`]:
//! at the bound, `append_*` waits for the writer up to
//! [`WriterOptions::append_timeout`] and then fails with
//! [`JournalError::Backpressure`]; `try_append_*` returns `Ok(None)` at once.
//! A record is never dropped without the caller being told. If the background
//! thread fails (disk full), the error is kept and returned by every later
//! call: the records appended since the last write are not on disk.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::files::{self, FileCounts, Files};
use super::format::{encode_record, header_len, record_len, RecordKind, FRAME_PREFIX, MAX_HEADER_BYTES, MAX_RECORD_BYTES, NO_ACCUMULATOR};
use super::segment::{self, Next, Opened, Scanner};
use super::JournalError;
use crate::event::SourcePosition;

/// A batch smaller than this makes the background thread wait up to
/// [`LINGER`] before the next, so that a steady trickle of appends is written
/// in a few large writes rather than one wake-up and write per record. A
/// `flush`, `close`, a full buffer or a due fsync end the wait at once.
const LINGER_BYTES: usize = 64 << 10;
const LINGER: Duration = Duration::from_millis(1);

/// When the background thread calls `fsync`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// Never (the OS writes back when it likes; `flush` only writes).
    Never,
    /// After each batch the background thread writes.
    EveryBatch,
    /// At most this long after a write; `flush` syncs at once.
    Interval(Duration),
}

#[derive(Debug, Clone)]
pub struct WriterOptions {
    /// Rotate to a new segment before a record would take a non-empty one past this size.
    pub segment_bytes: u64,
    /// Keep at most this many segments (the oldest are deleted at rotation).
    pub keep_segments: Option<usize>,
    /// Keep at most this many bytes of segments: at each rotation the oldest
    /// are deleted until they and a full active segment (`segment_bytes`) fit.
    /// The active segment is never deleted.
    pub keep_bytes: Option<u64>,
    pub fsync: FsyncPolicy,
    /// The bound on appended-but-unwritten bytes (one record larger than it
    /// is still taken, alone).
    pub buffer_bytes: usize,
    /// How long a full buffer makes `append_*` wait before `Backpressure`.
    pub append_timeout: Duration,
}

impl Default for WriterOptions {
    fn default() -> Self {
        WriterOptions {
            segment_bytes: 64 << 20,
            keep_segments: None,
            keep_bytes: None,
            fsync: FsyncPolicy::EveryBatch,
            buffer_bytes: 8 << 20,
            append_timeout: Duration::from_secs(5),
        }
    }
}

/// What opening found and did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenReport {
    /// The seq the first append will get.
    pub next_seq: u64,
    /// A torn tail cut off the last segment: the file, the offset it was cut
    /// at and the bytes dropped.
    pub truncated: Option<(PathBuf, u64, u64)>,
    /// A segment was started because the accumulators differ from the last one's.
    pub new_segment: bool,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JournalStats {
    /// The seq the next append will get.
    pub next_seq: u64,
    /// The last seq written to the OS (0: none yet).
    pub written_seq: u64,
    /// The last seq fsynced.
    pub synced_seq: u64,
    /// Appended but not yet written.
    pub buffered_bytes: usize,
    pub bytes_written: u64,
    pub batches: u64,
    pub fsyncs: u64,
    pub segments: usize,
    pub segments_created: u64,
    pub segments_deleted: u64,
    pub retention_failures: u64,
    /// Appends that found the buffer full and waited.
    pub backpressure_waits: u64,
    /// Appends refused because the buffer stayed full.
    pub backpressure_refusals: u64,
}

struct State {
    buf: Vec<u8>,
    next_seq: u64,
    written: u64,
    synced: u64,
    /// A flush wants an fsync up to this seq.
    sync_wanted: u64,
    /// A flush wants everything up to this seq written now (no lingering).
    flush_wanted: u64,
    closing: bool,
    stopped: bool,
    writer_idle: bool,
    /// Appenders and flushers waiting on `progress`.
    waiters: usize,
    error: Option<JournalError>,
    stats: JournalStats,
}

struct Shared {
    state: Mutex<State>,
    /// The background thread waits here for work.
    work: Condvar,
    /// Appenders and flushers wait here for the background thread.
    progress: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Appends records to a journal directory; see the module doc.
pub struct JournalWriter {
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
    dir: PathBuf,
    accumulators: usize,
    options: WriterOptions,
    report: OpenReport,
}

impl JournalWriter {
    /// Opens (creating) the journal directory `dir` of `graph` and continues
    /// after its last record. A torn tail of the last segment is cut off (see
    /// [`JournalWriter::report`]); a last segment with other accumulators is
    /// followed by a new one; another graph's journal is refused.
    pub fn open(dir: impl AsRef<Path>, graph: &str, accumulators: Vec<String>, options: WriterOptions) -> Result<Self, JournalError> {
        check(&options)?;
        let size = header_len(graph, &accumulators);
        if size > MAX_HEADER_BYTES {
            return Err(JournalError::HeaderTooLarge { size, max: MAX_HEADER_BYTES });
        }
        let dir = dir.as_ref().to_path_buf();
        segment::check_dir(&dir, true)?;
        let mut segments = segment::list(&dir)?;
        let mut report = OpenReport { next_seq: 1, truncated: None, new_segment: false };
        let mut active = None;
        if let Some(last) = segments.last().cloned() {
            match Scanner::open(&last, true)? {
                Opened::Torn { offset } => {
                    // Not even its header survived: no record is lost by starting it again.
                    report.truncated = Some((last.path.clone(), offset, last.len - offset));
                    std::fs::remove_file(&last.path).map_err(|e| JournalError::io(&last.path, "remove", e))?;
                    segments.pop();
                    report.next_seq = last.first_seq;
                }
                Opened::Ready(mut scanner) => {
                    if scanner.header.graph != graph {
                        let found = scanner.header.graph.clone();
                        return Err(JournalError::GraphMismatch { path: dir, found, expected: graph.to_string() });
                    }
                    let torn = loop {
                        match scanner.next_record()? {
                            Next::Record(..) => {}
                            Next::End => break None,
                            Next::Torn { offset } => break Some(offset),
                        }
                    };
                    let end = torn.unwrap_or(scanner.position());
                    if let Some(offset) = torn {
                        report.truncated = Some((last.path.clone(), offset, last.len - offset));
                    }
                    report.next_seq = scanner.expected_seq();
                    let empty = report.next_seq == last.first_seq;
                    if scanner.header.accumulators == accumulators {
                        let file = files::reopen(&last.path, end, torn.is_some())?;
                        segments.last_mut().expect("the last one").len = end;
                        active = Some((file, scanner.header_end()));
                    } else if empty {
                        std::fs::remove_file(&last.path).map_err(|e| JournalError::io(&last.path, "remove", e))?;
                        segments.pop();
                    } else {
                        if torn.is_some() {
                            drop(files::reopen(&last.path, end, true)?);
                            segments.last_mut().expect("the last one").len = end;
                        }
                        report.new_segment = true;
                    }
                }
            }
        }
        let first = report.next_seq;
        let files = Files::new(dir.clone(), options.clone(), graph.to_string(), accumulators.clone(), segments, active, first)?;
        let written = first - 1;
        let stats = JournalStats { next_seq: first, written_seq: written, synced_seq: written, segments: files.segment_count(), ..Default::default() };
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                buf: Vec::with_capacity(options.buffer_bytes.min(1 << 20)),
                next_seq: first,
                written,
                synced: written,
                sync_wanted: written,
                flush_wanted: written,
                closing: false,
                stopped: false,
                writer_idle: false,
                waiters: 0,
                error: None,
                stats,
            }),
            work: Condvar::new(),
            progress: Condvar::new(),
        });
        let background = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("headrace-journal".into())
            .spawn(move || run(&background, files))
            .map_err(|e| JournalError::io(&dir, "start the writer thread for", e))?;
        Ok(JournalWriter { shared, thread: Mutex::new(Some(thread)), dir, accumulators: accumulators.len(), options, report })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn report(&self) -> &OpenReport {
        &self.report
    }

    pub fn options(&self) -> &WriterOptions {
        &self.options
    }

    /// Appends an input event for accumulator `acc`; returns its seq. Waits
    /// while the buffer is full, up to `append_timeout`.
    pub fn append_event(&self, acc: u32, time_ns: i64, payload: &[u8], position: Option<&SourcePosition>) -> Result<u64, JournalError> {
        self.blocking(RecordKind::Event, acc, time_ns, payload, position)
    }

    pub fn append_advance(&self, time_ns: i64) -> Result<u64, JournalError> {
        self.blocking(RecordKind::Advance, NO_ACCUMULATOR, time_ns, &[], None)
    }

    pub fn append_settle(&self, time_ns: i64) -> Result<u64, JournalError> {
        self.blocking(RecordKind::Settle, NO_ACCUMULATOR, time_ns, &[], None)
    }

    /// A manual fire.
    pub fn append_fire(&self, time_ns: i64) -> Result<u64, JournalError> {
        self.blocking(RecordKind::Fire, NO_ACCUMULATOR, time_ns, &[], None)
    }

    /// Pausing (`true`) or resuming.
    pub fn append_pause(&self, time_ns: i64, paused: bool) -> Result<u64, JournalError> {
        self.blocking(RecordKind::Pause, NO_ACCUMULATOR, time_ns, &[u8::from(paused)], None)
    }

    /// Like `append_event`, but `Ok(None)` at once when the buffer is full.
    pub fn try_append_event(&self, acc: u32, time_ns: i64, payload: &[u8], position: Option<&SourcePosition>) -> Result<Option<u64>, JournalError> {
        self.append(RecordKind::Event, acc, time_ns, payload, position, None)
    }

    /// Like `append_advance`, but `Ok(None)` at once when the buffer is full.
    pub fn try_append_advance(&self, time_ns: i64) -> Result<Option<u64>, JournalError> {
        self.append(RecordKind::Advance, NO_ACCUMULATOR, time_ns, &[], None, None)
    }

    /// Like `append_settle`, but `Ok(None)` at once when the buffer is full.
    pub fn try_append_settle(&self, time_ns: i64) -> Result<Option<u64>, JournalError> {
        self.append(RecordKind::Settle, NO_ACCUMULATOR, time_ns, &[], None, None)
    }

    fn blocking(&self, kind: RecordKind, acc: u32, time_ns: i64, payload: &[u8], position: Option<&SourcePosition>) -> Result<u64, JournalError> {
        let seq = self.append(kind, acc, time_ns, payload, position, Some(self.options.append_timeout))?;
        Ok(seq.expect("a waiting append takes the record or fails"))
    }

    fn append(
        &self,
        kind: RecordKind,
        acc: u32,
        time_ns: i64,
        payload: &[u8],
        position: Option<&SourcePosition>,
        wait: Option<Duration>,
    ) -> Result<Option<u64>, JournalError> {
        if kind == RecordKind::Event && acc as usize >= self.accumulators {
            return Err(JournalError::UnknownAccumulator { index: acc, count: self.accumulators });
        }
        let size = record_len(payload.len(), position);
        if size > MAX_RECORD_BYTES {
            return Err(JournalError::RecordTooLarge { size, max: MAX_RECORD_BYTES });
        }
        let frame = FRAME_PREFIX + size;
        let mut st = self.shared.lock();
        let mut deadline = None;
        loop {
            usable(&st)?;
            if st.buf.is_empty() || st.buf.len() + frame <= self.options.buffer_bytes {
                break;
            }
            let Some(wait) = wait else { return Ok(None) };
            let now = Instant::now();
            let until = *deadline.get_or_insert_with(|| {
                st.stats.backpressure_waits += 1;
                now + wait
            });
            if now >= until {
                st.stats.backpressure_refusals += 1;
                return Err(JournalError::Backpressure { capacity: self.options.buffer_bytes, waited: wait });
            }
            st.waiters += 1;
            // A lingering writer must not make a full buffer wait out its linger.
            self.shared.work.notify_one();
            st = self.shared.progress.wait_timeout(st, until - now).unwrap_or_else(|p| p.into_inner()).0;
            st.waiters -= 1;
        }
        let seq = st.next_seq;
        st.next_seq += 1;
        encode_record(&mut st.buf, seq, time_ns, kind, acc, payload, position);
        let wake = st.writer_idle;
        st.writer_idle = false;
        drop(st);
        if wake {
            self.shared.work.notify_one();
        }
        Ok(Some(seq))
    }

    /// Waits until every record appended before the call is written (and
    /// fsynced, unless the policy is `Never`), up to `timeout` (None: no limit).
    pub fn flush(&self, timeout: Option<Duration>) -> Result<(), JournalError> {
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut st = self.shared.lock();
        let target = st.next_seq - 1;
        let sync = self.options.fsync != FsyncPolicy::Never;
        st.flush_wanted = st.flush_wanted.max(target);
        if sync {
            st.sync_wanted = st.sync_wanted.max(target);
        }
        self.shared.work.notify_one();
        loop {
            usable_or_stopped(&st)?;
            if st.written >= target && (!sync || st.synced >= target) {
                return Ok(());
            }
            if st.stopped {
                return Err(JournalError::Closed);
            }
            st.waiters += 1;
            st = match deadline {
                None => self.shared.progress.wait(st).unwrap_or_else(|p| p.into_inner()),
                Some(until) => {
                    let now = Instant::now();
                    if now >= until {
                        st.waiters -= 1;
                        let waited = timeout.unwrap_or_default();
                        return Err(JournalError::FlushTimeout { waited, pending: target.saturating_sub(st.written) });
                    }
                    self.shared.progress.wait_timeout(st, until - now).unwrap_or_else(|p| p.into_inner()).0
                }
            };
            st.waiters -= 1;
        }
    }

    /// Writes everything appended, syncs (unless `Never`) and stops the
    /// background thread. Later appends fail with `Closed`; closing again is a no-op.
    pub fn close(&self) -> Result<(), JournalError> {
        let handle = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take();
        let Some(handle) = handle else { return Ok(()) };
        self.shared.lock().closing = true;
        self.shared.work.notify_one();
        let panicked = handle.join().is_err();
        let st = self.shared.lock();
        if let Some(e) = &st.error {
            return Err(failed(&st, e));
        }
        if panicked {
            let error = std::io::Error::other("the journal writer thread panicked");
            return Err(JournalError::io(&self.dir, "write", error));
        }
        Ok(())
    }

    pub fn stats(&self) -> JournalStats {
        let st = self.shared.lock();
        JournalStats { next_seq: st.next_seq, written_seq: st.written, synced_seq: st.synced, buffered_bytes: st.buf.len(), ..st.stats }
    }
}

impl Drop for JournalWriter {
    fn drop(&mut self) {
        let _ = self.close();
    }
}

fn check(o: &WriterOptions) -> Result<(), JournalError> {
    let bad = |what, message: &str| Err(JournalError::Setting { what, message: message.to_string() });
    if o.segment_bytes == 0 {
        return bad("segment_bytes", "must be positive");
    }
    if o.buffer_bytes == 0 {
        return bad("buffer_bytes", "must be positive");
    }
    if o.keep_segments == Some(0) {
        return bad("keep_segments", "must be at least 1 (the segment being written)");
    }
    if o.fsync == FsyncPolicy::Interval(Duration::ZERO) {
        return bad("fsync", "an interval must be positive");
    }
    Ok(())
}

fn failed(st: &State, e: &JournalError) -> JournalError {
    JournalError::WriterFailed { written: st.written, error: Box::new(e.clone()) }
}

/// Appends are refused once the writer failed or is closing.
fn usable(st: &State) -> Result<(), JournalError> {
    match (&st.error, st.closing) {
        (Some(e), _) => Err(failed(st, e)),
        (None, true) => Err(JournalError::Closed),
        (None, false) => Ok(()),
    }
}

fn usable_or_stopped(st: &State) -> Result<(), JournalError> {
    match &st.error {
        Some(e) => Err(failed(st, e)),
        None => Ok(()),
    }
}

/// The background thread: takes the buffer, writes it, syncs per policy,
/// publishes progress; until closed and drained, or failed.
fn run(shared: &Shared, mut files: Files) {
    let mut spare: Vec<u8> = Vec::new();
    let interval = match files.options.fsync {
        FsyncPolicy::Interval(d) => Some(d),
        _ => None,
    };
    let mut last_sync = Instant::now();
    // After a small batch, the next one waits until this (group commit).
    let linger_bytes = LINGER_BYTES.min(files.options.buffer_bytes / 2);
    let mut linger_until: Option<Instant> = None;
    loop {
        let mut st = shared.lock();
        loop {
            let unsynced = st.written > st.synced;
            let interval_due = interval.is_some_and(|d| unsynced && last_sync.elapsed() >= d);
            let urgent = st.closing || st.sync_wanted > st.synced || st.flush_wanted > st.written || interval_due;
            let now = Instant::now();
            let lingering = linger_until.filter(|&t| now < t && st.buf.len() < linger_bytes && st.waiters == 0);
            if urgent || (!st.buf.is_empty() && lingering.is_none()) {
                break;
            }
            // Appends wake an idle writer only when its buffer is empty.
            st.writer_idle = st.buf.is_empty();
            let until = match (lingering, interval.filter(|_| unsynced)) {
                (Some(t), _) if !st.buf.is_empty() => Some(t),
                (_, Some(d)) => Some(now + d.saturating_sub(last_sync.elapsed())),
                _ => None,
            };
            st = match until {
                Some(t) => shared.work.wait_timeout(st, t.saturating_duration_since(now)).unwrap_or_else(|p| p.into_inner()).0,
                None => shared.work.wait(st).unwrap_or_else(|p| p.into_inner()),
            };
            st.writer_idle = false;
        }
        std::mem::swap(&mut st.buf, &mut spare);
        linger_until = (spare.len() < linger_bytes).then(|| Instant::now() + LINGER);
        let first = st.written + 1;
        let closing = st.closing;
        let wanted = st.sync_wanted > st.synced;
        let unsynced = st.written > st.synced || !spare.is_empty();
        if st.waiters > 0 {
            shared.progress.notify_all();
        }
        drop(st);

        let result = (|| -> Result<(u64, bool), JournalError> {
            let last = if spare.is_empty() { first - 1 } else { files.write_batch(&spare, first)? };
            let sync = match files.options.fsync {
                FsyncPolicy::Never => false,
                FsyncPolicy::EveryBatch => unsynced || wanted,
                FsyncPolicy::Interval(d) => wanted || (unsynced && (closing || last_sync.elapsed() >= d)),
            };
            if sync {
                files.sync()?;
            }
            Ok((last, sync))
        })();
        spare.clear();

        let mut st = shared.lock();
        let counts: FileCounts = files.counts;
        st.stats.batches += 1;
        st.stats.bytes_written = counts.bytes_written;
        st.stats.fsyncs = counts.fsyncs;
        st.stats.segments = files.segment_count();
        st.stats.segments_created = counts.segments_created;
        st.stats.segments_deleted = counts.segments_deleted;
        st.stats.retention_failures = counts.retention_failures;
        let stop = match result {
            Ok((last, synced)) => {
                st.written = last;
                if synced {
                    st.synced = last;
                    last_sync = Instant::now();
                }
                closing && st.buf.is_empty()
            }
            Err(e) => {
                st.error = Some(e);
                true
            }
        };
        if stop {
            st.stopped = true;
        }
        shared.progress.notify_all();
        drop(st);
        if stop {
            return;
        }
    }
}
