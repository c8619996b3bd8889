//! The explicit limits of the filesystem server. Each is a CLI flag of `switchboard server fs`
//! and a key of the gateway's `builtin` upstream config; the defaults are documented there.

use std::time::Duration;

/// Every bound the server enforces. Exceeding one gives a clear tool error (or, for searches,
/// an explicit `truncated` result), never a hang or an out-of-memory kill.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest number of bytes one call may read (a file, or all files of
    /// `read_multiple_files` together). Default 10 MiB.
    pub max_read_bytes: u64,
    /// Largest content `write_file`/`edit_file` may write. Default 10 MiB.
    pub max_write_bytes: u64,
    /// Most entries one listing (`list_directory*`, `directory_tree`) may return. Default 10,000.
    pub max_entries: usize,
    /// Deepest level `directory_tree` expands. Default 32.
    pub max_tree_depth: usize,
    /// Most results a search returns before it stops with `truncated: true`. Default 1,000.
    pub max_search_results: usize,
    /// Wall-clock budget of one search; when spent, it stops with `truncated: true`. Default 30 s.
    pub search_time_budget: Duration,
    /// Most paths one `read_multiple_files` call may name. Default 100.
    pub max_files_per_call: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_read_bytes: 10 * 1024 * 1024,
            max_write_bytes: 10 * 1024 * 1024,
            max_entries: 10_000,
            max_tree_depth: 32,
            max_search_results: 1_000,
            search_time_budget: Duration::from_secs(30),
            max_files_per_call: 100,
        }
    }
}
