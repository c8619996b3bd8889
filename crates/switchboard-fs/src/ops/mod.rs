//! The filesystem operations, as plain synchronous functions over a [`crate::Sandbox`].
//!
//! They are blocking by nature (the kernel has no async file API worth using here), so the
//! server runs each on tokio's blocking pool. Keeping them free of MCP types makes them easy
//! to test and to reuse.

pub mod list;
pub mod read;
pub mod search;
pub mod walk;
pub mod write;
