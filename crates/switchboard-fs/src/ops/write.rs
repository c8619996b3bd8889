//! Writing: atomic file writes, edits with a diff, directories, moves and deletes.
//!
//! Every write goes to a temporary file in the target's directory and is renamed over the
//! target, so a reader sees the old content or the new, never a torn file, and a crash leaves
//! at most a stray temporary. Moves use `renameat2(RENAME_NOREPLACE)` so an existing
//! destination is never overwritten, without a check-then-rename race.

use std::{
    io::Write,
    path::{Path, PathBuf},
};

use cap_std::fs::{Dir, OpenOptions};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{
    error::FsError,
    limits::Limits,
    sandbox::{Resolved, Sandbox, non_empty},
};

/// A resolved path split into its parent directory handle and final name.
struct Entry {
    parent: Dir,
    name: PathBuf,
    display: PathBuf,
}

/// Opens the parent directory of `path` (inside the sandbox) and returns it with the last
/// component. The root itself has no parent here: it cannot be written, moved or deleted.
fn entry(sandbox: &Sandbox, path: &str, what: &'static str) -> Result<(Entry, Resolved), FsError> {
    let resolved = sandbox.resolve(path)?;
    let display = sandbox.display_path(&resolved);
    let target = sandbox.target(&resolved);
    let (Some(parent_rel), Some(name)) = (target.rel.parent(), target.rel.file_name()) else {
        return Err(FsError::WrongKind {
            path: display.display().to_string(),
            message: what,
        });
    };
    let parent = target
        .root
        .dir
        .open_dir(non_empty(parent_rel))
        .map_err(|e| FsError::io(display.parent().unwrap_or(&display), e))?;
    Ok((
        Entry {
            parent,
            name: PathBuf::from(name),
            display,
        },
        resolved,
    ))
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct WriteOutcome {
    pub path: String,
    pub bytes_written: u64,
    /// True when the file did not exist before.
    pub created: bool,
}

/// Writes `content` to `path` atomically, replacing any existing file.
pub fn write_file(
    sandbox: &Sandbox,
    limits: &Limits,
    path: &str,
    content: &str,
) -> Result<WriteOutcome, FsError> {
    let (entry, _) = entry(
        sandbox,
        path,
        "is an allowed root; write to a file inside it",
    )?;
    check_write_size(&entry.display, content.len(), limits)?;
    let created = write_atomically(&entry, content.as_bytes())?;
    Ok(WriteOutcome {
        path: entry.display.display().to_string(),
        bytes_written: content.len() as u64,
        created,
    })
}

fn check_write_size(display: &Path, len: usize, limits: &Limits) -> Result<(), FsError> {
    if len as u64 > limits.max_write_bytes {
        return Err(FsError::LimitExceeded {
            path: display.display().to_string(),
            message: format!(
                "the content has {len} bytes, over the write limit of {} bytes",
                limits.max_write_bytes
            ),
        });
    }
    Ok(())
}

/// Temp file + fsync + rename. Keeps the permissions of a file it replaces. Returns whether the
/// file was newly created.
fn write_atomically(entry: &Entry, bytes: &[u8]) -> Result<bool, FsError> {
    let existing = match entry.parent.symlink_metadata(&entry.name) {
        Ok(meta) if meta.is_dir() => {
            return Err(FsError::WrongKind {
                path: entry.display.display().to_string(),
                message: "is a directory",
            });
        }
        Ok(meta) => Some(meta),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(FsError::io(&entry.display, e)),
    };
    let tmp_name = format!(
        ".{}.{}.sbtmp",
        entry.name.display(),
        uuid::Uuid::new_v4().simple()
    );
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    let mut file = entry
        .parent
        .open_with(&tmp_name, &options)
        .map_err(|e| FsError::io(&entry.display, e))?;
    let written = (|| {
        file.write_all(bytes)?;
        if let Some(meta) = existing.as_ref().filter(|m| m.is_file()) {
            file.set_permissions(meta.permissions())?;
        }
        file.sync_all()?;
        entry.parent.rename(&tmp_name, &entry.parent, &entry.name)
    })();
    if let Err(e) = written {
        // Best effort: the temporary is ours and useless now.
        let _ = entry.parent.remove_file(&tmp_name);
        return Err(FsError::io(&entry.display, e));
    }
    Ok(existing.is_none())
}

/// One replacement in `edit_file`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Edit {
    /// Text to search for. It must occur exactly once unless `replaceAll` is true.
    pub old_text: String,
    /// Text to put in its place.
    pub new_text: String,
    /// Replace every occurrence instead of refusing an ambiguous edit.
    #[serde(default)]
    pub replace_all: bool,
}

#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EditOutcome {
    pub path: String,
    /// Unified diff of the change.
    pub diff: String,
    /// False for a dry run.
    pub applied: bool,
    pub replacements: usize,
}

/// Applies `edits` in order and writes the result atomically (unless `dry_run`).
pub fn edit_file(
    sandbox: &Sandbox,
    limits: &Limits,
    path: &str,
    edits: &[Edit],
    dry_run: bool,
) -> Result<EditOutcome, FsError> {
    if edits.is_empty() {
        return Err(FsError::BadRequest {
            message: "edits must contain at least one edit".into(),
        });
    }
    let original = crate::ops::read::read_text(sandbox, limits, path, None, None)?.content;
    let (entry, _) = entry(sandbox, path, "is an allowed root, not a file")?;
    let crlf = original.contains("\r\n");
    let mut text = original.replace("\r\n", "\n");
    let mut replacements = 0;
    for (index, edit) in edits.iter().enumerate() {
        let (next, count) = apply_edit(&text, edit).map_err(|message| FsError::BadRequest {
            message: format!("edit {} of {}: {message}", index + 1, edits.len()),
        })?;
        text = next;
        replacements += count;
    }
    let diff = unified_diff(&original.replace("\r\n", "\n"), &text, &entry.display);
    if !dry_run {
        let output = if crlf {
            text.replace('\n', "\r\n")
        } else {
            text
        };
        check_write_size(&entry.display, output.len(), limits)?;
        write_atomically(&entry, output.as_bytes())?;
    }
    Ok(EditOutcome {
        path: entry.display.display().to_string(),
        diff,
        applied: !dry_run,
        replacements,
    })
}

/// Applies one edit: an exact match first; failing that, a match of whole lines that are equal
/// after trimming whitespace (re-indented to the matched block), as the official server does.
fn apply_edit(text: &str, edit: &Edit) -> Result<(String, usize), String> {
    let old = edit.old_text.replace("\r\n", "\n");
    let new = edit.new_text.replace("\r\n", "\n");
    if old.is_empty() {
        return Err("oldText is empty".into());
    }
    let count = text.matches(&old).count();
    match count {
        1 => return Ok((text.replacen(&old, &new, 1), 1)),
        n if n > 1 && edit.replace_all => return Ok((text.replace(&old, &new), n)),
        n if n > 1 => {
            return Err(format!(
                "oldText occurs {n} times; make it unique with more context, or set replaceAll"
            ));
        }
        _ => {}
    }
    // Whitespace-tolerant line match.
    let old_lines: Vec<&str> = old.lines().collect();
    let text_lines: Vec<&str> = text.split('\n').collect();
    let matches: Vec<usize> = (0..text_lines.len().saturating_sub(old_lines.len()) + 1)
        .filter(|&start| {
            text_lines.len() >= start + old_lines.len()
                && old_lines
                    .iter()
                    .zip(&text_lines[start..start + old_lines.len()])
                    .all(|(a, b)| a.trim() == b.trim())
        })
        .collect();
    let start = match matches.as_slice() {
        [] => return Err("could not find oldText in the file".into()),
        [one] => *one,
        many if !edit.replace_all => {
            return Err(format!(
                "oldText matches {} places (ignoring indentation); make it unique or set replaceAll",
                many.len()
            ));
        }
        // replaceAll over whitespace-tolerant matches is ambiguous when they overlap; refuse.
        _ => return Err("replaceAll needs an exact match of oldText".into()),
    };
    let indent: String = text_lines[start]
        .chars()
        .take_while(|c| c.is_whitespace())
        .collect();
    let old_indent: String = old_lines
        .first()
        .map(|l| l.chars().take_while(|c| c.is_whitespace()).collect())
        .unwrap_or_default();
    let replaced: Vec<String> = new
        .split('\n')
        .map(|line| match line.strip_prefix(old_indent.as_str()) {
            Some(rest) if !line.is_empty() => format!("{indent}{rest}"),
            _ => line.to_string(),
        })
        .collect();
    let mut out: Vec<String> = text_lines[..start].iter().map(|s| s.to_string()).collect();
    out.extend(replaced);
    out.extend(
        text_lines[start + old_lines.len()..]
            .iter()
            .map(|s| s.to_string()),
    );
    Ok((out.join("\n"), 1))
}

fn unified_diff(old: &str, new: &str, path: &Path) -> String {
    let name = path.display().to_string();
    similar::TextDiff::from_lines(old, new)
        .unified_diff()
        .context_radius(3)
        .header(&name, &name)
        .to_string()
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct PathOutcome {
    pub path: String,
    /// What was done: `created`, `existed`, `moved`, `deleted`.
    pub outcome: &'static str,
}

/// `mkdir -p`; succeeds if the directory already exists.
pub fn create_directory(sandbox: &Sandbox, path: &str) -> Result<PathOutcome, FsError> {
    let resolved = sandbox.resolve(path)?;
    let target = sandbox.target(&resolved);
    let display = sandbox.display_path(&resolved);
    let existed = target
        .root
        .dir
        .metadata(non_empty(target.rel))
        .map(|m| m.is_dir())
        .unwrap_or(false);
    target
        .root
        .dir
        .create_dir_all(non_empty(target.rel))
        .map_err(|e| FsError::io(&display, e))?;
    Ok(PathOutcome {
        path: display.display().to_string(),
        outcome: if existed { "existed" } else { "created" },
    })
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct MoveOutcome {
    pub source: String,
    pub destination: String,
}

/// Renames `source` to `destination`, refusing (atomically) if the destination exists.
pub fn move_file(
    sandbox: &Sandbox,
    source: &str,
    destination: &str,
) -> Result<MoveOutcome, FsError> {
    let (from, _) = entry(sandbox, source, "is an allowed root and cannot be moved")?;
    let (to, _) = entry(
        sandbox,
        destination,
        "is an allowed root and cannot be replaced",
    )?;
    if let Err(e) = from.parent.symlink_metadata(&from.name) {
        return Err(FsError::io(&from.display, e));
    }
    rustix::fs::renameat_with(
        &from.parent,
        &from.name,
        &to.parent,
        &to.name,
        rustix::fs::RenameFlags::NOREPLACE,
    )
    .map_err(|errno| {
        let err = std::io::Error::from(errno);
        if err.kind() == std::io::ErrorKind::AlreadyExists {
            FsError::AlreadyExists {
                path: to.display.display().to_string(),
            }
        } else {
            FsError::io(&from.display, err)
        }
    })?;
    Ok(MoveOutcome {
        source: from.display.display().to_string(),
        destination: to.display.display().to_string(),
    })
}

/// Deletes a file or a symlink (never the symlink's target). Refuses directories.
pub fn delete_file(sandbox: &Sandbox, path: &str) -> Result<PathOutcome, FsError> {
    let (entry, _) = entry(sandbox, path, "is an allowed root and cannot be deleted")?;
    let meta = entry
        .parent
        .symlink_metadata(&entry.name)
        .map_err(|e| FsError::io(&entry.display, e))?;
    if meta.is_dir() {
        return Err(FsError::WrongKind {
            path: entry.display.display().to_string(),
            message: "is a directory; use delete_directory",
        });
    }
    entry
        .parent
        .remove_file(&entry.name)
        .map_err(|e| FsError::io(&entry.display, e))?;
    Ok(PathOutcome {
        path: entry.display.display().to_string(),
        outcome: "deleted",
    })
}

/// Deletes a directory; a non-empty one only with `recursive`. Symlinks inside are removed,
/// never followed.
pub fn delete_directory(
    sandbox: &Sandbox,
    path: &str,
    recursive: bool,
) -> Result<PathOutcome, FsError> {
    let (entry, _) = entry(sandbox, path, "is an allowed root and cannot be deleted")?;
    let meta = entry
        .parent
        .symlink_metadata(&entry.name)
        .map_err(|e| FsError::io(&entry.display, e))?;
    if !meta.is_dir() {
        return Err(FsError::WrongKind {
            path: entry.display.display().to_string(),
            message: "is not a directory; use delete_file",
        });
    }
    let result = if recursive {
        entry.parent.remove_dir_all(&entry.name)
    } else {
        entry.parent.remove_dir(&entry.name)
    };
    result.map_err(|e| {
        if e.kind() == std::io::ErrorKind::DirectoryNotEmpty {
            FsError::BadRequest {
                message: format!(
                    "{}: the directory is not empty; pass recursive: true to delete its contents",
                    entry.display.display()
                ),
            }
        } else {
            FsError::io(&entry.display, e)
        }
    })?;
    Ok(PathOutcome {
        path: entry.display.display().to_string(),
        outcome: "deleted",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn edit(old: &str, new: &str, all: bool) -> Edit {
        Edit {
            old_text: old.into(),
            new_text: new.into(),
            replace_all: all,
        }
    }

    #[test]
    fn ambiguous_edit_is_refused_unless_replace_all() {
        let text = "a = 1\nb = 1\n";
        let err = apply_edit(text, &edit("= 1", "= 2", false)).expect_err("ambiguous");
        assert!(err.contains("occurs 2 times"), "{err}");
        let (out, n) = apply_edit(text, &edit("= 1", "= 2", true)).expect("replace all");
        assert_eq!((out.as_str(), n), ("a = 2\nb = 2\n", 2));
    }

    #[test]
    fn whitespace_tolerant_match_reindents() {
        let text = "fn main() {\n    let x = 1;\n    let y = 2;\n}\n";
        let (out, _) = apply_edit(
            text,
            &edit("let x = 1;\nlet y = 2;", "let x = 3;\nlet y = 4;", false),
        )
        .expect("edit");
        assert_eq!(out, "fn main() {\n    let x = 3;\n    let y = 4;\n}\n");
    }

    #[test]
    fn missing_text_is_an_error() {
        assert!(apply_edit("abc", &edit("xyz", "q", false)).is_err());
    }
}
