//! Saving and restoring a processor's state (see `checkpoint::snapshot`).

use std::sync::atomic::Ordering::Relaxed;

use super::{Now, Pending, Processor, SourcePosition};
use crate::checkpoint::snapshot::{
    AccumulatorSnapshot, ControlSnapshot, DeadLetterSnapshot, EngineSnapshot, InputSnapshot, InputsSnapshot,
    PendingSnapshot, Position, ReactorSnapshot, SourcesSnapshot,
};
use crate::checkpoint::Value;
use crate::error::Named;
use crate::dead_letter::{DeadLetter, Stage};
use crate::host::{Calls, CheckpointError, Report};
use crate::spec::InputStrategy;

/// What a restore could not apply (a different graph version): for the log.
#[derive(Debug, Default, PartialEq)]
pub struct Skipped {
    pub names: Vec<String>,
}

impl<V, E> Processor<V, E> {
    /// Whether a store is configured (the policy has a count or an interval).
    pub fn checkpoints_enabled(&self) -> bool {
        self.config.checkpoint_fires > 0 || self.config.checkpoint_interval.is_some()
    }

    /// Whether the checkpoint policy calls for one now.
    pub fn checkpoint_due(&self, now: &Now) -> bool {
        let Some(since) = self.unsaved_since else { return false };
        let fires = self.metrics.fires.load(Relaxed) - self.checkpointed_fires;
        (self.config.checkpoint_fires > 0 && fires >= self.config.checkpoint_fires)
            || self.config.checkpoint_interval.is_some_and(|every| self.time(now) >= since + every)
    }

    /// Takes a snapshot and hands it to the host to be written. A failure is
    /// reported to the host and marks the reactor degraded until a checkpoint
    /// succeeds; the next try comes at the policy's pace, not at every batch.
    pub fn checkpoint(&mut self, calls: &mut dyn Calls<V, E>) -> Result<(), CheckpointError> {
        let taken = self
            .export(&mut |v: &V| calls.to_value(v))
            .map_err(CheckpointError::Unsupported)
            .and_then(|snapshot| calls.persist(snapshot));
        self.checkpointed_fires = self.metrics.fires.load(Relaxed);
        self.metrics.checkpoint_failing.store(taken.is_err(), Relaxed);
        match taken {
            Ok(()) => {
                self.unsaved_since = None;
                Ok(())
            }
            Err(error) => {
                if self.unsaved_since.is_some() {
                    self.unsaved_since = Some(self.now().get());
                }
                calls.report(Report::CheckpointFailed(error.clone()));
                Err(error)
            }
        }
    }

    /// Everything needed to resume exactly here, values converted by `conv`.
    pub fn export<X>(&self, conv: &mut dyn FnMut(&V) -> Result<Value, X>) -> Result<EngineSnapshot, X> {
        let names = |i: usize| self.plan.accumulators[i].name.clone();
        let mut accumulators = Vec::with_capacity(self.accs.len());
        // `dirty` also names batches whose boundary no successful fire has seen.
        let unfired = |i: usize| self.dirty[i] || self.accs[i].is_held();
        for (i, acc) in self.accs.iter().enumerate() {
            let (last, buffer, window) = acc.export(conv)?;
            let m = &self.metrics.accumulators[i];
            accumulators.push((
                names(i),
                AccumulatorSnapshot {
                    kind: self.plan.accumulators[i].kind.label().to_string(),
                    user_state: None,
                    last,
                    buffer,
                    window,
                    events: m.events.load(Relaxed),
                    boundaries: m.boundaries.load(Relaxed),
                    suppressed: m.suppressed.load(Relaxed),
                    errors: m.errors.load(Relaxed),
                },
            ));
        }
        let mut cache = Vec::new();
        for (i, v) in self.cache.iter().enumerate() {
            if let Some(v) = v {
                cache.push((names(i), conv(v)?));
            }
        }
        let mut queue = Vec::with_capacity(self.queue.len());
        for p in &self.queue {
            queue.push(PendingSnapshot { accumulator: names(p.acc), value: conv(&p.value)?, seq: p.seq, attempts: p.attempts });
        }
        let (letters, dropped) = self.dead_letters.with(|l, dropped| {
            let letters: Result<Vec<_>, X> = l
                .iter()
                .map(|d| {
                    Ok(DeadLetterSnapshot {
                        accumulator: names(d.acc),
                        stage: d.stage.label().to_string(),
                        value: conv(&d.value)?,
                        error: d.error.clone(),
                        attempts: d.attempts,
                        seq: d.seq,
                    })
                })
                .collect();
            (letters, dropped)
        });
        let mut inputs = Vec::with_capacity(self.burst.len());
        for (i, list) in self.burst.iter().enumerate() {
            let burst = list.iter().map(&mut *conv).collect::<Result<Vec<_>, X>>()?;
            inputs.push(InputSnapshot { accumulator: names(i), strategy: self.plan.inputs[i].as_str().to_string(), burst });
        }
        let m = &self.metrics;
        Ok(EngineSnapshot {
            accumulators,
            reactor: ReactorSnapshot {
                cache,
                dirty: (0..self.dirty.len()).filter(|&i| unfired(i)).map(names).collect(),
                queue,
                dead_letters: letters?,
                dead_letters_dropped: dropped,
                attempts: self.attempts,
                next_fire_id: self.next_fire_id,
                next_seq: self.next_seq,
                fires: m.fires.load(Relaxed),
                fires_failed: m.fires_failed.load(Relaxed),
                retries: m.retries.load(Relaxed),
                last_fired_at_us: m.last_fired_at_us.load(Relaxed),
            },
            sources: SourcesSnapshot {
                positions: self
                    .positions
                    .iter()
                    .map(|((acc, topic, partition), offset)| Position {
                        accumulator: names(*acc),
                        topic: topic.clone(),
                        partition: *partition,
                        offset: *offset,
                    })
                    .collect(),
            },
            control: ControlSnapshot { paused: self.paused },
            inputs: InputsSnapshot { inputs },
        })
    }

    /// Restores a snapshot into a fresh processor, before any event. State of
    /// accumulators this graph no longer has (or whose kind changed) is skipped.
    pub fn import<X>(&mut self, snap: EngineSnapshot, conv: &mut dyn FnMut(Value) -> Result<V, X>) -> Result<Skipped, X> {
        let mut skipped = Skipped::default();
        let now = self.now().get();
        for (name, a) in snap.accumulators {
            match self.index_of(&name) {
                Some(i) if self.plan.accumulators[i].kind.label() == a.kind => {
                    let last = a.last.map(&mut *conv).transpose()?;
                    let buffer = a.buffer.into_iter().map(&mut *conv).collect::<Result<Vec<_>, X>>()?;
                    let window = a.window.into_iter().map(&mut *conv).collect::<Result<Vec<_>, X>>()?;
                    self.accs[i].import(last, buffer, window, now);
                    let m = &self.metrics.accumulators[i];
                    m.events.store(a.events, Relaxed);
                    m.boundaries.store(a.boundaries, Relaxed);
                    m.suppressed.store(a.suppressed, Relaxed);
                    m.errors.store(a.errors, Relaxed);
                    m.buffered.store(self.accs[i].buffered(), Relaxed);
                }
                _ => skipped.names.push(format!("{}{name}", crate::checkpoint::snapshot::ACCUMULATOR_PREFIX)),
            }
        }
        let r = snap.reactor;
        for (name, v) in r.cache {
            match self.index_of(&name) {
                Some(i) => {
                    let v = conv(v)?;
                    self.store(i, v);
                }
                None => skipped.names.push(format!("reactor cache '{name}'")),
            }
        }
        // Dirty flags matter to latest and burst inputs only (a sequential
        // boundary not yet fired is in the queue).
        for name in r.dirty {
            let Some(i) = self.index_of(&name) else { continue };
            if self.plan.inputs[i] == InputStrategy::Sequential {
                continue;
            }
            if self.plan.criteria.member[i] {
                self.dirty[i] = true;
                self.any_dirty = true;
            }
            if self.plan.inputs[i] == InputStrategy::Latest && self.cache[i].is_some() {
                self.accs[i].hold();
            }
        }
        self.attempts = r.attempts;
        self.latest_seq = r.next_seq.saturating_sub(1);
        for input in snap.inputs.inputs {
            if input.burst.is_empty() {
                continue;
            }
            match self.index_of(&input.accumulator) {
                Some(i) if self.plan.inputs[i] == InputStrategy::Burst => {
                    for v in input.burst {
                        let v = conv(v)?;
                        self.burst[i].push(v);
                        self.burst_pending += 1;
                    }
                    if self.plan.criteria.member[i] {
                        self.dirty[i] = true;
                        self.any_dirty = true;
                    }
                }
                // No longer a burst input: its newest boundary is in the cache
                // (and dirty); the list has no place to go.
                _ => skipped.names.push(format!("burst list of '{}' ({} boundaries)", input.accumulator, input.burst.len())),
            }
        }
        for p in r.queue {
            match self.index_of(&p.accumulator) {
                Some(acc) => {
                    let value = conv(p.value)?;
                    self.queue.push_back(Pending { acc, value, seq: p.seq, attempts: p.attempts });
                }
                None => skipped.names.push(format!("queued boundary of '{}'", p.accumulator)),
            }
        }
        for d in r.dead_letters {
            let Some(acc) = self.index_of(&d.accumulator) else { continue };
            let stage = [Stage::Fire, Stage::Checkpoint].into_iter().find(|s| s.label() == d.stage).unwrap_or(Stage::Accumulator);
            let value = conv(d.value)?;
            self.dead_letters.push(DeadLetter { acc, stage, value, error: d.error, attempts: d.attempts, seq: d.seq });
        }
        self.dead_letters.add_dropped(r.dead_letters_dropped);
        self.next_fire_id = self.next_fire_id.max(r.next_fire_id);
        self.next_seq = self.next_seq.max(r.next_seq);
        let m = &self.metrics;
        m.fires.store(r.fires, Relaxed);
        m.fires_failed.store(r.fires_failed, Relaxed);
        m.retries.store(r.retries, Relaxed);
        m.last_fired_at_us.store(r.last_fired_at_us, Relaxed);
        self.set_pending();
        self.checkpointed_fires = r.fires;
        for p in snap.sources.positions {
            match self.index_of(&p.accumulator) {
                Some(acc) => {
                    self.positions.insert((acc, p.topic, p.partition), p.offset);
                }
                None => skipped.names.push(format!("position of '{}'", p.accumulator)),
            }
        }
        self.paused = snap.control.paused;
        m.paused.store(self.paused, Relaxed);
        Ok(skipped)
    }

    /// Saved stream positions: (accumulator, position of the next offset to read).
    pub fn positions(&self) -> Vec<(usize, SourcePosition)> {
        self.positions.iter().map(|((a, t, p), o)| (*a, SourcePosition::new(t.clone(), *p, *o))).collect()
    }

    fn index_of(&self, name: &str) -> Option<usize> {
        self.plan.accumulators.iter().position(|a| a.name == name)
    }
}
