//! A filesystem MCP server, confined to its roots by construction.
//!
//! Tool and argument names match `@modelcontextprotocol/server-filesystem`, so existing
//! prompts and clients work unchanged; `delete_file`, `delete_directory` and
//! `search_file_contents` are added. What differs is how it stays inside its roots: every
//! operation goes through an open directory handle (see [`sandbox`]), so the path-prefix and
//! symlink escapes of the official server (CVE-2025-53110, CVE-2025-53109) cannot happen here,
//! and there is no check-then-use window.
//!
//! Layout: [`sandbox`] maps client paths to (root handle, relative path); [`ops`] holds the
//! operations as plain blocking functions; [`server`] is the MCP face (tools, roots, results);
//! [`limits`] holds every bound.

pub mod error;
pub mod limits;
pub mod ops;
pub mod sandbox;
pub mod server;

pub use error::FsError;
pub use limits::Limits;
pub use server::{FsConfig, FsServer, WRITE_TOOLS};
