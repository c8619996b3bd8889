//! Reading files: text (whole, head or tail), media as base64, and several files at once.

use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};

use base64::Engine;
use schemars::JsonSchema;
use serde::Serialize;

use crate::{
    error::FsError,
    limits::Limits,
    sandbox::{Sandbox, non_empty},
};

/// How many leading bytes are inspected for a NUL byte, the same heuristic git uses.
const BINARY_SNIFF_BYTES: usize = 8 * 1024;

#[derive(Debug, Serialize, JsonSchema)]
pub struct TextFile {
    /// The file's text (or its first/last lines when `head`/`tail` was given).
    pub content: String,
}

/// Opens a file for reading inside the sandbox; refuses directories.
fn open_regular(
    sandbox: &Sandbox,
    path: &str,
) -> Result<(cap_std::fs::File, cap_std::fs::Metadata, std::path::PathBuf), FsError> {
    let resolved = sandbox.resolve(path)?;
    let target = sandbox.target(&resolved);
    let display = sandbox.display_path(&resolved);
    let file = target
        .root
        .dir
        .open(non_empty(target.rel))
        .map_err(|e| FsError::io(&display, e))?;
    let meta = file.metadata().map_err(|e| FsError::io(&display, e))?;
    if meta.is_dir() {
        return Err(FsError::WrongKind {
            path: display.display().to_string(),
            message: "is a directory; use list_directory",
        });
    }
    Ok((file, meta, display))
}

/// Reads a UTF-8 text file, or its first `head` / last `tail` lines.
pub fn read_text(
    sandbox: &Sandbox,
    limits: &Limits,
    path: &str,
    head: Option<u64>,
    tail: Option<u64>,
) -> Result<TextFile, FsError> {
    if head.is_some() && tail.is_some() {
        return Err(FsError::BadRequest {
            message: "head and tail cannot be used together".into(),
        });
    }
    let (file, meta, display) = open_regular(sandbox, path)?;
    let limit = limits.max_read_bytes;
    let over_limit = || FsError::LimitExceeded {
        path: display.display().to_string(),
        message: format!(
            "reading it would exceed the limit of {limit} bytes per call (the file has {} bytes); use head or tail",
            meta.len()
        ),
    };
    let bytes = match (head, tail) {
        (Some(lines), _) => read_head(file.into_std(), lines, limit).ok_or_else(over_limit)?,
        (_, Some(lines)) => {
            read_tail(file.into_std(), meta.len(), lines, limit).ok_or_else(over_limit)?
        }
        _ => {
            if meta.len() > limit {
                return Err(over_limit());
            }
            let mut bytes = Vec::with_capacity(meta.len() as usize);
            // `take` guards against a file that grows between stat and read.
            file.into_std()
                .take(limit + 1)
                .read_to_end(&mut bytes)
                .map_err(|e| FsError::io(&display, e))?;
            if bytes.len() as u64 > limit {
                return Err(over_limit());
            }
            bytes
        }
    };
    let content = into_text(bytes).ok_or_else(|| FsError::Binary {
        path: display.display().to_string(),
    })?;
    Ok(TextFile { content })
}

/// Text if the bytes look like UTF-8 text: no NUL in the first 8 KiB and valid UTF-8.
fn into_text(bytes: Vec<u8>) -> Option<String> {
    let sniff = &bytes[..bytes.len().min(BINARY_SNIFF_BYTES)];
    if sniff.contains(&0) {
        return None;
    }
    String::from_utf8(bytes).ok()
}

/// The first `lines` lines, or `None` if they exceed `limit` bytes.
fn read_head(file: std::fs::File, lines: u64, limit: u64) -> Option<Vec<u8>> {
    let mut reader = BufReader::new(file.take(limit + 1));
    let mut out = Vec::new();
    for _ in 0..lines {
        let before = out.len();
        match reader.read_until(b'\n', &mut out) {
            Ok(0) => break,
            Ok(_) => {}
            Err(_) => return None,
        }
        if out.len() as u64 > limit {
            return None;
        }
        if out.len() == before {
            break;
        }
    }
    if out.last() == Some(&b'\n') {
        out.pop();
    }
    Some(out)
}

/// The last `lines` lines, read backwards in chunks, or `None` if they exceed `limit` bytes.
fn read_tail(mut file: std::fs::File, len: u64, lines: u64, limit: u64) -> Option<Vec<u8>> {
    const CHUNK: u64 = 8 * 1024;
    if lines == 0 || len == 0 {
        return Some(Vec::new());
    }
    let mut buf: Vec<u8> = Vec::new();
    let mut pos = len;
    loop {
        let start = pos.saturating_sub(CHUNK);
        let mut chunk = vec![0u8; (pos - start) as usize];
        file.seek(SeekFrom::Start(start)).ok()?;
        file.read_exact(&mut chunk).ok()?;
        chunk.extend_from_slice(&buf);
        buf = chunk;
        pos = start;
        let mut count = 0u64;
        let mut cut = None;
        // A trailing newline ends the last line; it does not start an empty one.
        let scan_end = if buf.last() == Some(&b'\n') {
            buf.len() - 1
        } else {
            buf.len()
        };
        for i in (0..scan_end).rev() {
            if buf[i] == b'\n' {
                count += 1;
                if count == lines {
                    cut = Some(i + 1);
                    break;
                }
            }
        }
        if let Some(cut) = cut {
            buf.drain(..cut);
            break;
        }
        if pos == 0 {
            break;
        }
        if buf.len() as u64 > limit {
            return None;
        }
    }
    if buf.last() == Some(&b'\n') {
        buf.pop();
    }
    if buf.len() as u64 > limit {
        return None;
    }
    Some(buf)
}

#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MediaFile {
    pub path: String,
    pub mime_type: String,
    pub size: u64,
    /// `image`, `audio`, or `resource` (any other type, as an embedded blob).
    pub kind: &'static str,
    #[serde(skip)]
    #[schemars(skip)]
    pub base64: String,
}

/// Reads any file as base64, with its MIME type from the extension.
pub fn read_media(sandbox: &Sandbox, limits: &Limits, path: &str) -> Result<MediaFile, FsError> {
    let (file, meta, display) = open_regular(sandbox, path)?;
    if meta.len() > limits.max_read_bytes {
        return Err(FsError::LimitExceeded {
            path: display.display().to_string(),
            message: format!(
                "the file has {} bytes, over the limit of {} bytes per call",
                meta.len(),
                limits.max_read_bytes
            ),
        });
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.into_std()
        .take(limits.max_read_bytes + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| FsError::io(&display, e))?;
    if bytes.len() as u64 > limits.max_read_bytes {
        return Err(FsError::LimitExceeded {
            path: display.display().to_string(),
            message: format!(
                "the file grew past the limit of {} bytes",
                limits.max_read_bytes
            ),
        });
    }
    let mime = mime_guess::from_path(&display).first_or_octet_stream();
    let kind = match mime.type_() {
        mime_guess::mime::IMAGE => "image",
        mime_guess::mime::AUDIO => "audio",
        _ => "resource",
    };
    Ok(MediaFile {
        path: display.display().to_string(),
        mime_type: mime.essence_str().to_string(),
        size: bytes.len() as u64,
        kind,
        base64: base64::engine::general_purpose::STANDARD.encode(&bytes),
    })
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct MultipleFiles {
    pub files: Vec<FileOrError>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct FileOrError {
    pub path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Reads several text files; one failing file does not fail the call. All files together
/// share the per-call byte limit.
pub fn read_multiple(
    sandbox: &Sandbox,
    limits: &Limits,
    paths: &[String],
) -> Result<MultipleFiles, FsError> {
    if paths.is_empty() {
        return Err(FsError::BadRequest {
            message: "paths must name at least one file".into(),
        });
    }
    if paths.len() > limits.max_files_per_call {
        return Err(FsError::LimitExceeded {
            path: String::from("paths"),
            message: format!(
                "{} paths given, over the limit of {} per call",
                paths.len(),
                limits.max_files_per_call
            ),
        });
    }
    let mut remaining = limits.max_read_bytes;
    let mut files = Vec::with_capacity(paths.len());
    for path in paths {
        let per_file = Limits {
            max_read_bytes: remaining,
            ..limits.clone()
        };
        match read_text(sandbox, &per_file, path, None, None) {
            Ok(text) => {
                remaining = remaining.saturating_sub(text.content.len() as u64);
                files.push(FileOrError {
                    path: path.clone(),
                    content: Some(text.content),
                    error: None,
                });
            }
            Err(err) => files.push(FileOrError {
                path: path.clone(),
                content: None,
                error: Some(err.to_string()),
            }),
        }
    }
    Ok(MultipleFiles { files })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn tail_of(text: &str, lines: u64) -> String {
        let mut f = tempfile::tempfile().expect("tempfile");
        f.write_all(text.as_bytes()).expect("write");
        let out = read_tail(f, text.len() as u64, lines, 1 << 20).expect("tail");
        String::from_utf8(out).expect("utf8")
    }

    fn head_of(text: &str, lines: u64) -> String {
        let mut f = tempfile::tempfile().expect("tempfile");
        f.write_all(text.as_bytes()).expect("write");
        f.seek(SeekFrom::Start(0)).expect("seek");
        String::from_utf8(read_head(f, lines, 1 << 20).expect("head")).expect("utf8")
    }

    #[test]
    fn tail_counts_lines_from_the_end() {
        assert_eq!(tail_of("a\nb\nc\n", 2), "b\nc");
        assert_eq!(tail_of("a\nb\nc", 2), "b\nc");
        assert_eq!(tail_of("a\nb\nc", 5), "a\nb\nc");
        assert_eq!(tail_of("", 3), "");
        let long: String = (0..5000).map(|i| format!("line {i}\n")).collect();
        assert_eq!(tail_of(&long, 2), "line 4998\nline 4999");
    }

    #[test]
    fn head_counts_lines_from_the_start() {
        assert_eq!(head_of("a\nb\nc\n", 2), "a\nb");
        assert_eq!(head_of("a", 2), "a");
        assert_eq!(head_of("a\nb\n", 0), "");
    }

    #[test]
    fn nul_bytes_mean_binary() {
        assert!(into_text(b"abc\0def".to_vec()).is_none());
        assert!(into_text(vec![0xff, 0xfe, b'a']).is_none());
        assert_eq!(into_text(b"plain".to_vec()).as_deref(), Some("plain"));
    }
}
