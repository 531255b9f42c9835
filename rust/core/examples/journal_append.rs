//! The cost of `JournalWriter::append_event` on the appending thread:
//! `cargo run --release -p headrace-core --example journal_append [count]`.
//! Appends `count` (default 1,000,000) events of a 32-byte payload, then
//! flushes, and prints the time per append and until everything was on disk.

use std::time::Instant;

use headrace_core::journal::{FsyncPolicy, JournalWriter, WriterOptions};

fn main() {
    let count: u64 = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(1_000_000);
    let dir = std::env::temp_dir().join(format!("headrace-journal-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    for (name, fsync) in [("batch", FsyncPolicy::EveryBatch), ("never", FsyncPolicy::Never)] {
        let options = WriterOptions { fsync, ..WriterOptions::default() };
        let writer = JournalWriter::open(dir.join(name), "bench", vec!["a".into()], options).expect("open");
        let payload = [7u8; 32];
        let start = Instant::now();
        for i in 0..count {
            writer.append_event(0, i as i64, &payload, None).expect("append");
        }
        let appended = start.elapsed();
        writer.flush(None).expect("flush");
        let flushed = start.elapsed();
        let stats = writer.stats();
        writer.close().expect("close");
        println!(
            "fsync={name}: {count} appends in {appended:?} ({:.1} ns/append), all written in {flushed:?}; {} batches, {} fsyncs, {} backpressure waits",
            appended.as_nanos() as f64 / count as f64,
            stats.batches,
            stats.fsyncs,
            stats.backpressure_waits,
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
