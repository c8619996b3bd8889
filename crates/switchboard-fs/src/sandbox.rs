//! Confinement of every path to the allowed roots, by construction.
//!
//! The official filesystem server checks strings (`startsWith`, then `realpath`) and then opens
//! by name, which is how it got CVE-2025-53110 (prefix confusion) and CVE-2025-53109 (symlink
//! escape), and why a check-then-use race remains. Here each root is an open directory handle
//! (`cap_std::fs::Dir`), and every operation is relative to that handle: the kernel resolves the
//! path beneath it (`openat2(RESOLVE_BENEATH)` on Linux, or cap-std's component-by-component
//! walk with `O_NOFOLLOW`), so `..`, absolute symlinks and symlinked parents cannot leave it,
//! and there is no window between a check and the use.
//!
//! What this module adds on top is the mapping from a client's path string to (root, relative
//! path), with clear errors for the classes of input that can never be valid: NUL bytes,
//! Windows separators, absolute paths outside every root, and `..` that climbs above a root.

use std::{
    io,
    path::{Component, Path, PathBuf},
    sync::Arc,
};

use cap_std::{ambient_authority, fs::Dir};

use crate::error::FsError;

/// One allowed directory: its canonical path (for display and for matching absolute paths) and
/// the handle all I/O goes through.
#[derive(Debug)]
pub struct Root {
    /// The canonical (symlink-free) absolute path of the root.
    pub path: PathBuf,
    /// The path as it was given, made absolute, when it differs from `path` (e.g. `/tmp` on a
    /// system where it is a symlink). Absolute paths under either form are accepted.
    pub alias: Option<PathBuf>,
    pub dir: Dir,
}

impl Root {
    /// Opens `path` as a root. The path must exist and be a directory.
    pub fn open(path: &Path) -> Result<Root, FsError> {
        let absolute = if path.is_absolute() {
            path.to_path_buf()
        } else {
            std::env::current_dir()
                .map_err(|source| FsError::io(path, source))?
                .join(path)
        };
        let canonical =
            std::fs::canonicalize(&absolute).map_err(|source| FsError::io(path, source))?;
        let dir = Dir::open_ambient_dir(&canonical, ambient_authority())
            .map_err(|source| FsError::io(path, source))?;
        let alias =
            (lexical_normalize(&absolute) != canonical).then(|| lexical_normalize(&absolute));
        Ok(Root {
            path: canonical,
            alias,
            dir,
        })
    }
}

/// The set of allowed roots. Cheap to share; replaced whole when the client's roots change.
#[derive(Debug, Clone)]
pub struct Sandbox {
    roots: Arc<Vec<Root>>,
}

/// A path resolved against a root: all I/O uses `root.dir` with `rel`.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    pub root: &'a Root,
    /// Relative to the root, free of `.` and `..`; empty means the root itself.
    pub rel: &'a Path,
}

/// An owned resolution, returned by [`Sandbox::resolve`].
#[derive(Debug, Clone)]
pub struct Resolved {
    root_index: usize,
    pub rel: PathBuf,
}

impl Sandbox {
    pub fn new(roots: Vec<Root>) -> Result<Sandbox, FsError> {
        if roots.is_empty() {
            return Err(FsError::NoRoots);
        }
        Ok(Sandbox {
            roots: Arc::new(roots),
        })
    }

    pub fn roots(&self) -> &[Root] {
        &self.roots
    }

    /// Borrows the root and relative path of a resolution.
    pub fn target<'a>(&'a self, resolved: &'a Resolved) -> Target<'a> {
        Target {
            root: &self.roots[resolved.root_index],
            rel: &resolved.rel,
        }
    }

    /// The absolute path a resolution stands for, for display to the client.
    pub fn display_path(&self, resolved: &Resolved) -> PathBuf {
        let root = &self.roots[resolved.root_index];
        if resolved.rel.as_os_str().is_empty() {
            root.path.clone()
        } else {
            root.path.join(&resolved.rel)
        }
    }

    /// Maps a client-supplied path to a root and a relative path.
    ///
    /// Absolute paths must lie under a root (compared component by component, so `/data_evil`
    /// is not under `/data`); the most specific root wins when roots nest. Relative paths are
    /// taken relative to the first root in which they exist, else the first root.
    pub fn resolve(&self, raw: &str) -> Result<Resolved, FsError> {
        if raw.contains('\0') {
            return Err(FsError::InvalidPath {
                path: raw.replace('\0', "\\0"),
                reason: "it contains a NUL byte",
            });
        }
        if raw.contains('\\') {
            return Err(FsError::InvalidPath {
                path: raw.to_string(),
                reason: "it contains a backslash; use '/' as the separator",
            });
        }
        if raw.is_empty() {
            return Err(FsError::InvalidPath {
                path: String::new(),
                reason: "it is empty",
            });
        }
        let path = Path::new(raw);
        if path.is_absolute() {
            let normalized = lexical_normalize(path);
            let mut best: Option<(usize, PathBuf, usize)> = None;
            for (index, root) in self.roots.iter().enumerate() {
                for base in std::iter::once(&root.path).chain(root.alias.as_ref()) {
                    if let Ok(rest) = normalized.strip_prefix(base) {
                        let depth = base.components().count();
                        if best.as_ref().is_none_or(|(_, _, d)| depth > *d) {
                            best = Some((index, rest.to_path_buf(), depth));
                        }
                    }
                }
            }
            return match best {
                Some((root_index, rel, _)) => Ok(Resolved {
                    root_index,
                    rel: relative_inside(raw, &rel)?,
                }),
                None => Err(FsError::OutsideRoots {
                    path: raw.to_string(),
                }),
            };
        }
        let rel = relative_inside(raw, path)?;
        let root_index = self
            .roots
            .iter()
            .position(|root| root.dir.symlink_metadata(non_empty(&rel)).is_ok())
            .unwrap_or(0);
        Ok(Resolved { root_index, rel })
    }
}

/// `.` for an empty relative path: cap-std's APIs want a path, and `.` is the root itself.
pub fn non_empty(rel: &Path) -> &Path {
    if rel.as_os_str().is_empty() {
        Path::new(".")
    } else {
        rel
    }
}

/// Removes `.` and resolves `..` lexically, refusing any `..` that would climb above the start.
fn relative_inside(raw: &str, rel: &Path) -> Result<PathBuf, FsError> {
    let mut out = PathBuf::new();
    for component in rel.components() {
        match component {
            Component::CurDir => {}
            Component::Normal(part) => out.push(part),
            Component::ParentDir => {
                if !out.pop() {
                    return Err(FsError::OutsideRoots {
                        path: raw.to_string(),
                    });
                }
            }
            Component::RootDir | Component::Prefix(_) => {
                return Err(FsError::OutsideRoots {
                    path: raw.to_string(),
                });
            }
        }
    }
    Ok(out)
}

/// Lexical normalisation of an absolute path (`.` removed, `..` applied, never above `/`).
fn lexical_normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                // `/..` is `/`, as the kernel has it.
                if out.parent().is_some() {
                    out.pop();
                }
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

/// True when cap-std refused an operation because its path would have left the root.
pub fn is_escape(err: &io::Error) -> bool {
    err.kind() == io::ErrorKind::PermissionDenied
        && err.to_string().contains("outside of the filesystem")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sandbox(dirs: &[&Path]) -> Sandbox {
        let roots = dirs
            .iter()
            .map(|d| Root::open(d))
            .collect::<Result<Vec<_>, _>>();
        Sandbox::new(roots.unwrap_or_default()).unwrap_or_else(|e| panic!("sandbox: {e}"))
    }

    #[test]
    fn prefix_confusion_is_outside() {
        let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let data = tmp.path().join("data");
        std::fs::create_dir(&data).unwrap_or_else(|e| panic!("{e}"));
        std::fs::create_dir(tmp.path().join("data_evil")).unwrap_or_else(|e| panic!("{e}"));
        let sb = sandbox(&[&data]);
        let evil = format!("{}_evil/secret", sb.roots()[0].path.display());
        assert!(matches!(
            sb.resolve(&evil),
            Err(FsError::OutsideRoots { .. })
        ));
    }

    #[test]
    fn dotdot_above_root_is_refused_but_inside_is_fine() {
        let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let sb = sandbox(&[tmp.path()]);
        assert!(matches!(
            sb.resolve("../etc/passwd"),
            Err(FsError::OutsideRoots { .. })
        ));
        assert!(matches!(
            sb.resolve("a/../../b"),
            Err(FsError::OutsideRoots { .. })
        ));
        let inside = sb.resolve("a/../b").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(inside.rel, PathBuf::from("b"));
        let abs = format!("{}/x/../../y", sb.roots()[0].path.display());
        assert!(sb.resolve(&abs).is_err());
    }

    #[test]
    fn nul_and_backslash_are_invalid() {
        let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let sb = sandbox(&[tmp.path()]);
        assert!(matches!(
            sb.resolve("a\0b"),
            Err(FsError::InvalidPath { .. })
        ));
        assert!(matches!(
            sb.resolve("..\\..\\etc\\passwd"),
            Err(FsError::InvalidPath { .. })
        ));
    }

    #[test]
    fn nested_roots_pick_the_most_specific() {
        let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let inner = tmp.path().join("inner");
        std::fs::create_dir(&inner).unwrap_or_else(|e| panic!("{e}"));
        let sb = sandbox(&[tmp.path(), &inner]);
        let p = format!("{}/f.txt", sb.roots()[1].path.display());
        let r = sb.resolve(&p).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r.root_index, 1);
        assert_eq!(r.rel, PathBuf::from("f.txt"));
    }
}
