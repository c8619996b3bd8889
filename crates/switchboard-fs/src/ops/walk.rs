//! A recursive directory walk through capability handles.
//!
//! Each subdirectory is opened with `O_NOFOLLOW` relative to its parent's handle, so a
//! directory swapped for a symlink mid-walk is refused rather than followed, and the walk can
//! never list names outside the root. Symlinks are reported, never descended.

use std::{ffi::OsString, sync::Arc, time::Instant};

use cap_fs_ext::DirExt;
use cap_std::fs::Dir;
use globset::{Glob, GlobBuilder, GlobSet, GlobSetBuilder};
use ignore::gitignore::{Gitignore, GitignoreBuilder};

use crate::{error::FsError, ops::list::EntryType};

/// Glob patterns a walk skips, with the official server's convenience: a pattern without `*`
/// also matches that name at any depth and everything under it.
#[derive(Debug)]
pub struct ExcludeSet {
    set: GlobSet,
}

impl ExcludeSet {
    pub fn new(patterns: &[String]) -> Result<ExcludeSet, FsError> {
        let mut builder = GlobSetBuilder::new();
        for pattern in patterns {
            let mut variants = vec![pattern.clone()];
            if !pattern.contains('*') {
                variants.push(format!("**/{pattern}"));
                variants.push(format!("**/{pattern}/**"));
                variants.push(format!("{pattern}/**"));
            }
            for variant in variants {
                builder.add(glob(&variant)?);
            }
        }
        let set = builder.build().map_err(|e| FsError::BadRequest {
            message: format!("bad excludePatterns: {e}"),
        })?;
        Ok(ExcludeSet { set })
    }

    pub fn is_excluded(&self, rel: &str) -> bool {
        !self.set.is_empty() && self.set.is_match(rel)
    }
}

/// A glob where `*` does not cross `/` (so `*.rs` matches only the top level, `**/*.rs` all
/// levels) and dotfiles match, like minimatch with `dot: true`.
pub fn glob(pattern: &str) -> Result<Glob, FsError> {
    GlobBuilder::new(pattern)
        .literal_separator(true)
        .backslash_escape(true)
        .build()
        .map_err(|e| FsError::BadRequest {
            message: format!("bad glob pattern {pattern:?}: {e}"),
        })
}

/// One entry the walk visits.
pub struct Visit<'a> {
    /// Path relative to the walk's start, with `/` separators.
    pub rel: &'a str,
    pub entry_type: EntryType,
    /// The directory containing the entry (open it relative to this).
    pub parent: &'a Dir,
    pub name: &'a OsString,
}

/// What the visitor wants next.
pub enum Flow {
    Continue,
    Stop,
}

/// Options of a walk.
pub struct WalkOptions<'a> {
    pub exclude: &'a ExcludeSet,
    pub respect_gitignore: bool,
    pub deadline: Option<Instant>,
}

/// How the walk ended.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct WalkEnd {
    /// The visitor asked to stop.
    pub stopped: bool,
    /// The time budget ran out.
    pub timed_out: bool,
}

struct Frame {
    dir: Dir,
    rel: String,
    ignores: Vec<Arc<Gitignore>>,
}

/// Walks `start` depth-first (entries sorted by name within each directory) and calls `visit`
/// for every entry that is not excluded. Unreadable subdirectories are skipped silently, as
/// `find` would report and continue; the start directory itself must be readable.
pub fn walk(
    start: Dir,
    options: &WalkOptions<'_>,
    mut visit: impl FnMut(&Visit<'_>) -> Flow,
) -> Result<WalkEnd, std::io::Error> {
    let mut stack = vec![Frame {
        dir: start,
        rel: String::new(),
        ignores: Vec::new(),
    }];
    let mut first = true;
    while let Some(frame) = stack.pop() {
        if options.deadline.is_some_and(|d| Instant::now() >= d) {
            return Ok(WalkEnd {
                timed_out: true,
                ..WalkEnd::default()
            });
        }
        let mut ignores = frame.ignores.clone();
        if options.respect_gitignore
            && let Some(gitignore) = load_gitignore(&frame.dir, &frame.rel)
        {
            ignores.push(Arc::new(gitignore));
        }
        let entries = match frame.dir.entries() {
            Ok(entries) => entries,
            Err(e) if first => return Err(e),
            Err(_) => continue,
        };
        first = false;
        let mut items: Vec<(OsString, EntryType)> = entries
            .filter_map(Result::ok)
            .filter_map(|e| Some((e.file_name(), EntryType::of(e.file_type().ok()?))))
            .collect();
        items.sort();
        let mut subdirs = Vec::new();
        for (name, entry_type) in &items {
            let name_str = name.to_string_lossy();
            let rel = if frame.rel.is_empty() {
                name_str.into_owned()
            } else {
                format!("{}/{}", frame.rel, name_str)
            };
            let is_dir = *entry_type == EntryType::Directory;
            if options.exclude.is_excluded(&rel) {
                continue;
            }
            if options.respect_gitignore && (name == ".git" || is_ignored(&ignores, &rel, is_dir)) {
                continue;
            }
            if let Flow::Stop = visit(&Visit {
                rel: &rel,
                entry_type: *entry_type,
                parent: &frame.dir,
                name,
            }) {
                return Ok(WalkEnd {
                    stopped: true,
                    ..WalkEnd::default()
                });
            }
            if is_dir {
                subdirs.push((name.clone(), rel));
            }
        }
        // Reverse so the first subdirectory is walked first.
        for (name, rel) in subdirs.into_iter().rev() {
            if let Ok(dir) = frame.dir.open_dir_nofollow(&name) {
                stack.push(Frame {
                    dir,
                    rel,
                    ignores: ignores.clone(),
                });
            }
        }
    }
    Ok(WalkEnd::default())
}

/// The `.gitignore` of a directory, matched against paths relative to the walk's start.
fn load_gitignore(dir: &Dir, rel: &str) -> Option<Gitignore> {
    let text = dir.read_to_string(".gitignore").ok()?;
    // A virtual absolute base keeps the matcher's prefix stripping consistent for the start
    // directory (empty `rel`) and its subdirectories alike.
    let base = format!("/{rel}");
    let mut builder = GitignoreBuilder::new(&base);
    for line in text.lines() {
        let _ = builder.add_line(None, line);
    }
    builder.build().ok()
}

fn is_ignored(ignores: &[Arc<Gitignore>], rel: &str, is_dir: bool) -> bool {
    let path = format!("/{rel}");
    for gitignore in ignores.iter().rev() {
        let matched = gitignore.matched_path_or_any_parents(&path, is_dir);
        if matched.is_ignore() {
            return true;
        }
        if matched.is_whitelist() {
            return false;
        }
    }
    false
}

/// A set of include globs (empty = everything).
pub fn include_set(patterns: &[String]) -> Result<Option<GlobSet>, FsError> {
    if patterns.is_empty() {
        return Ok(None);
    }
    let mut builder = GlobSetBuilder::new();
    for pattern in patterns {
        builder.add(glob(pattern)?);
    }
    builder.build().map(Some).map_err(|e| FsError::BadRequest {
        message: format!("bad glob: {e}"),
    })
}
