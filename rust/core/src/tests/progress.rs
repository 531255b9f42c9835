//! `Progress`: waiters are woken when their target is reached, whatever the
//! other waiters wait for, and not lost however their waits interleave with
//! the processor's completions.

use std::sync::Arc;
use std::time::Duration;

use crate::channel::Progress;

#[test]
fn waiters_with_different_targets_are_each_released_when_reached() {
    for round in 0..200u64 {
        let progress = Arc::new(Progress::default());
        let targets = [1 + round % 7, 50, 120, 500];
        let waiters: Vec<_> = targets
            .iter()
            .map(|&t| {
                let p = progress.clone();
                std::thread::spawn(move || (t, p.wait_for(t, None), p.completed()))
            })
            .collect();
        // Completions in uneven steps, racing with the waiters' arrival.
        for step in [1, 2, 3, 40, 60, 100, 294] {
            progress.complete(step);
            if round % 3 == 0 {
                std::thread::yield_now();
            }
        }
        for w in waiters {
            let (target, reached, seen) = w.join().unwrap();
            assert!(reached, "waiter for {target} must be released");
            assert!(seen >= target);
        }
    }
}

#[test]
fn a_waiter_that_timed_out_leaves_the_others_waiting_correctly() {
    let progress = Arc::new(Progress::default());
    assert!(!progress.wait_for(10, Some(Duration::from_millis(1))));
    let p = progress.clone();
    let late = std::thread::spawn(move || p.wait_for(20, None));
    progress.complete(10);
    progress.complete(10);
    assert!(late.join().unwrap());
}

#[test]
fn closing_releases_every_waiter() {
    let progress = Arc::new(Progress::default());
    let waiters: Vec<_> = (0..3)
        .map(|i| {
            let p = progress.clone();
            std::thread::spawn(move || p.wait_for(10 + i, None))
        })
        .collect();
    progress.complete(1);
    progress.close();
    for w in waiters {
        assert!(!w.join().unwrap());
    }
}

#[test]
fn a_lone_waiter_is_woken_by_the_completion_that_reaches_its_target() {
    for _ in 0..50 {
        let progress = Arc::new(Progress::default());
        let p = progress.clone();
        let waiter = std::thread::spawn(move || p.wait_for(10, None));
        std::thread::sleep(Duration::from_micros(200));
        progress.complete(5);
        progress.complete(5);
        assert!(waiter.join().unwrap());
    }
}
