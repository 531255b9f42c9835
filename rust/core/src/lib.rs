//! headrace-core: the engine of headrace, free of any interpreter.
//!
//! A graph is described by a [`spec::GraphSpec`], compiled once into a
//! [`plan::Plan`], and run by a [`processor::Processor`] that calls user code
//! through the [`host::Calls`] trait. In thread mode [`driver::run`] feeds the
//! processor from the bounded [`channel`].

mod accumulator;
pub mod channel;
pub mod checkpoint;
pub mod clock;
mod deadline;
mod cutoff;
pub mod dead_letter;
pub mod driver;
pub mod error;
pub mod event;
mod executor;
pub mod host;
pub mod journal;
pub mod metrics;
pub mod plan;
pub mod processor;
pub mod spec;

#[cfg(test)]
mod tests;

pub use error::Error;
