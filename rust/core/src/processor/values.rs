//! Every value the processor holds, for a host with a garbage collector: it
//! must see them to collect a cycle that runs through one (an event holding a
//! reference back to whatever holds the processor).

use super::Processor;
use crate::accumulator::AccState;

impl<V, E> Processor<V, E> {
    /// Calls `f` on every value held: the input cache, the sequential queue,
    /// batch buffers, state windows, polling last values and dead letters.
    /// Dead letters are skipped if another thread holds their lock right now
    /// (a collector must not wait).
    pub fn for_each_value(&self, f: &mut dyn FnMut(&V)) {
        self.cache.iter().flatten().for_each(&mut *f);
        self.queue.iter().for_each(|p| f(&p.value));
        self.burst.iter().flatten().for_each(&mut *f);
        for acc in &self.accs {
            match acc {
                AccState::Plain | AccState::Forward => {}
                AccState::Polling { last } => last.iter().for_each(&mut *f),
                AccState::Batch { buffer, .. } => buffer.iter().for_each(&mut *f),
                AccState::State { window, .. } => window.iter().for_each(&mut *f),
            }
        }
        self.dead_letters.try_with(|letters| letters.iter().for_each(|l| f(&l.value)));
    }

    /// Drops every value held (see [`Processor::for_each_value`]): the
    /// collector breaking a cycle. The processor must not be used afterwards
    /// except to be dropped.
    pub fn release_values(&mut self) {
        self.cache.iter_mut().for_each(|c| *c = None);
        self.queue.clear();
        self.burst.iter_mut().for_each(Vec::clear);
        for (acc, spec) in self.accs.iter_mut().zip(&self.plan.accumulators) {
            *acc = AccState::new(spec);
        }
        drop(self.dead_letters.take());
    }
}
