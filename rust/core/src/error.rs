//! The core's one error type: everything that can go wrong in it and reach a
//! host, each kind carrying what its message needs (never a bare string).

use std::fmt;

use crate::checkpoint::CodecError;
use crate::host::CheckpointError;
use crate::plan::DefinitionError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The graph description is invalid; every problem is named.
    Definition(DefinitionError),
    /// A checkpoint was not taken.
    Checkpoint(CheckpointError),
    /// A stored checkpoint component could not be encoded or decoded.
    Codec { component: String, error: CodecError },
    /// A setting's text names none of its allowed values.
    Setting { what: &'static str, got: String, expected: &'static [&'static str] },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Definition(e) => e.fmt(f),
            Error::Checkpoint(e) => e.fmt(f),
            Error::Codec { component, error } => write!(f, "component '{component}': {error}"),
            Error::Setting { what, got, expected } => {
                write!(f, "{what} must be ")?;
                for (i, e) in expected.iter().enumerate() {
                    let sep = match i {
                        0 => "",
                        _ if i + 1 == expected.len() => " or ",
                        _ => ", ",
                    };
                    write!(f, "{sep}'{e}'")?;
                }
                write!(f, ", got '{got}'")
            }
        }
    }
}

impl std::error::Error for Error {}

impl From<DefinitionError> for Error {
    fn from(e: DefinitionError) -> Self {
        Error::Definition(e)
    }
}

impl From<CheckpointError> for Error {
    fn from(e: CheckpointError) -> Self {
        Error::Checkpoint(e)
    }
}

impl From<crate::checkpoint::snapshot::ComponentError> for Error {
    fn from((component, error): crate::checkpoint::snapshot::ComponentError) -> Self {
        Error::Codec { component, error }
    }
}

/// Spellings of a closed set of values: one `as_str` per value, and the
/// `FromStr` built from it, so that every layer takes its words from here.
pub trait Named: Sized + Copy + 'static {
    /// What the setting is called in messages ("input_strategy").
    const WHAT: &'static str;
    /// Every value, in the order messages list them.
    const ALL: &'static [Self];
    /// Every spelling, in the order of `ALL`.
    const NAMES: &'static [&'static str];

    fn as_str(self) -> &'static str;

    fn parse_named(text: &str) -> Result<Self, Error> {
        Self::ALL.iter().copied().find(|v| v.as_str() == text).ok_or_else(|| Error::Setting {
            what: Self::WHAT,
            got: text.to_string(),
            expected: Self::NAMES,
        })
    }
}

/// Implements [`Named`] and `FromStr` for a field-less enum from its spellings.
#[macro_export]
macro_rules! named {
    ($ty:ty, $what:literal, { $($variant:path => $name:literal),+ $(,)? }) => {
        impl $crate::error::Named for $ty {
            const WHAT: &'static str = $what;
            const ALL: &'static [Self] = &[$($variant),+];
            const NAMES: &'static [&'static str] = &[$($name),+];
            fn as_str(self) -> &'static str {
                match self {
                    $($variant => $name),+
                }
            }
        }

        impl std::str::FromStr for $ty {
            type Err = $crate::error::Error;
            fn from_str(text: &str) -> Result<Self, Self::Err> {
                <$ty as $crate::error::Named>::parse_named(text)
            }
        }
    };
}
