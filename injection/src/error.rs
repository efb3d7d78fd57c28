//! Why the generator refuses: one line that names the object, what is wrong and what to do.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error(pub String);

impl Error {
    pub fn new(message: impl Into<String>) -> Error {
        Error(message.into())
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

/// `Err(Error)` with a formatted message.
#[macro_export]
macro_rules! refuse {
    ($($arg:tt)*) => { return Err($crate::error::Error(format!($($arg)*))) };
}
pub use crate::refuse;
