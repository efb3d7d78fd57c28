//! Why the generator refuses: one line that names the object, what is wrong and what to do. The
//! line is escaped ([`crate::text::escape`]): a name or value holding a line break never makes a
//! refusal span two lines.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error(pub String);

impl Error {
    pub fn new(message: impl Into<String>) -> Error {
        Error(crate::text::escape(&message.into()))
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
    ($($arg:tt)*) => { return Err($crate::error::Error::new(format!($($arg)*))) };
}
pub use crate::refuse;
