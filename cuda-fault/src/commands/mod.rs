//! The command line's pieces, one module per command group; `lib.rs` assembles them.

pub mod fault;
pub mod flags;
pub mod hold;
pub mod inject;
pub mod node;
pub mod scenario;
pub mod verify;
