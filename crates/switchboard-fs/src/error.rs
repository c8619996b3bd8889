//! Errors of the filesystem server, each with a stable `kind` that tool results carry.

use std::{io, path::Path};

/// Why a filesystem operation was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum FsError {
    #[error("no allowed directories: pass --root DIR, or connect with a client that offers roots")]
    NoRoots,
    #[error("path {path:?} is not valid: {reason}")]
    InvalidPath { path: String, reason: &'static str },
    #[error("path {path:?} is outside the allowed directories")]
    OutsideRoots { path: String },
    #[error("{path}: not found")]
    NotFound { path: String },
    #[error("{path}: already exists")]
    AlreadyExists { path: String },
    #[error("{path}: {message}")]
    WrongKind { path: String, message: &'static str },
    #[error("{path}: {message}")]
    LimitExceeded { path: String, message: String },
    #[error("{path}: binary content; use read_media_file to read it as base64")]
    Binary { path: String },
    #[error("{message}")]
    BadRequest { message: String },
    #[error("{path}: permission denied")]
    PermissionDenied { path: String },
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: io::Error,
    },
}

impl FsError {
    /// Classifies an I/O error on `path`, turning cap-std's sandbox refusals into
    /// [`FsError::OutsideRoots`] (a symlink or `..` that would have left the root).
    pub fn io(path: impl AsRef<Path>, source: io::Error) -> FsError {
        let path = path.as_ref().display().to_string();
        if crate::sandbox::is_escape(&source) {
            return FsError::OutsideRoots { path };
        }
        match source.kind() {
            io::ErrorKind::NotFound => FsError::NotFound { path },
            io::ErrorKind::AlreadyExists => FsError::AlreadyExists { path },
            io::ErrorKind::PermissionDenied => FsError::PermissionDenied { path },
            _ => FsError::Io { path, source },
        }
    }

    /// The stable, machine-readable kind carried in the tool error's structured content.
    pub fn kind(&self) -> &'static str {
        match self {
            FsError::NoRoots => "no_roots",
            FsError::InvalidPath { .. } => "invalid_path",
            FsError::OutsideRoots { .. } => "outside_roots",
            FsError::NotFound { .. } => "not_found",
            FsError::AlreadyExists { .. } => "already_exists",
            FsError::WrongKind { .. } => "wrong_kind",
            FsError::LimitExceeded { .. } => "limit_exceeded",
            FsError::Binary { .. } => "binary_file",
            FsError::BadRequest { .. } => "bad_request",
            FsError::PermissionDenied { .. } => "permission_denied",
            FsError::Io { .. } => "io",
        }
    }
}
