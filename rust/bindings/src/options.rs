//! `Engine`'s settings, read from one Python options object
//! (`headrace._options.EngineOptions`) by attribute. Types are checked by the
//! extraction; spellings and ranges by [`EngineOptions::settings`], which turns
//! each enum's text into its Rust value through the core's `FromStr` and each
//! duration into a `Duration` here, once.

use std::str::FromStr;
use std::time::Duration;

use pyo3::prelude::*;
use pyo3::types::PyDict;

use headrace_core::checkpoint::CodecId;
use headrace_core::processor::Config;

use crate::errors::Error;
use crate::restore::OnCorrupt;

#[derive(FromPyObject)]
pub struct EngineOptions {
    pub mode: String,
    pub on_fire: Option<Py<PyAny>>,
    pub capacity: usize,
    pub push_timeout: Option<f64>,
    pub max_attempts: u32,
    pub retry_backoff: f64,
    pub dead_letter_limit: usize,
    pub idle_spin: f64,
    pub checkpoint_writer: Option<Py<PyAny>>,
    pub checkpoint_codec: String,
    pub checkpoint_every: u64,
    pub checkpoint_interval: Option<f64>,
    pub restore: Option<Py<PyDict>>,
    pub checkpoint_key: String,
    pub on_corrupt: String,
    pub on_undecodable: Option<Py<PyAny>>,
    pub check_checkpointable: Option<bool>,
    pub profile: bool,
    pub record_inputs: bool,
    /// Chain graphs' events may go through the chain runners (`chain.rs`).
    pub chain_runs: bool,
    /// A simulated clock to run on (None: the wall clock).
    pub clock: Option<Py<crate::time::SimTime>>,
    /// The input journal every input is recorded to (None: none).
    pub journal: Option<Py<crate::journal::JournalWriter>>,
    /// Replaying a journal: settle where it says the live run did.
    pub replay: bool,
    /// The running loop async callables use (None: the runtime's own, if needed).
    #[pyo3(attribute("loop"))]
    pub event_loop: Option<Py<PyAny>>,
}

/// Inline: the caller's thread runs each item. Thread: a processor thread does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModeKind {
    Inline,
    Thread,
}

headrace_core::named!(ModeKind, "mode", { ModeKind::Inline => "inline", ModeKind::Thread => "thread" });

/// The options, checked and converted.
pub struct Settings {
    pub mode: ModeKind,
    pub config: Config,
    pub capacity: usize,
    pub push_timeout: Option<Duration>,
    pub idle_spin: Duration,
    pub checkpoint_codec: CodecId,
    pub on_corrupt: OnCorrupt,
}

/// Seconds as a `Duration`, or a `SettingError` naming `what`.
pub fn seconds(value: f64, what: &str) -> Result<Duration, Error> {
    Duration::try_from_secs_f64(value).map_err(|_| Error::Setting {
        what: what.to_string(),
        message: format!("{what} must be a finite, non-negative number of seconds, got {value}"),
    })
}

pub fn optional_seconds(value: Option<f64>, what: &str) -> Result<Option<Duration>, Error> {
    value.map(|v| seconds(v, what)).transpose()
}

fn parse<T: FromStr<Err = headrace_core::Error>>(text: &str) -> Result<T, Error> {
    Ok(text.parse()?)
}

impl EngineOptions {
    pub fn settings(&self) -> Result<Settings, Error> {
        for (what, n) in [("capacity", self.capacity), ("max_attempts", self.max_attempts as usize)] {
            if n == 0 {
                return Err(Error::Setting { what: what.into(), message: format!("{what} must be at least 1, got 0") });
            }
        }
        let checkpointing = self.checkpoint_writer.is_some();
        let config = Config {
            max_attempts: self.max_attempts,
            retry_backoff: seconds(self.retry_backoff, "retry_backoff")?,
            dead_letter_limit: self.dead_letter_limit,
            checkpoint_fires: if checkpointing { self.checkpoint_every } else { 0 },
            checkpoint_interval: match checkpointing {
                true => optional_seconds(self.checkpoint_interval, "checkpoint_interval")?,
                false => None,
            },
            check_checkpointable: self.check_checkpointable.unwrap_or(checkpointing),
            profile: self.profile,
            record_inputs: self.record_inputs,
            simulated: self.clock.as_ref().map(|c| c.get().time()),
            settle_as_recorded: self.replay,
        };
        Ok(Settings {
            mode: parse(&self.mode)?,
            config,
            capacity: self.capacity,
            push_timeout: optional_seconds(self.push_timeout, "push_timeout")?,
            idle_spin: seconds(self.idle_spin, "idle_spin")?,
            checkpoint_codec: parse(&self.checkpoint_codec)?,
            on_corrupt: parse(&self.on_corrupt)?,
        })
    }
}
