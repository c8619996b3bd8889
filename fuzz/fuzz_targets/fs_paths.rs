//! Path resolution of the filesystem server (`Sandbox::resolve`) on any string a client sends,
//! with two nested roots. It must:
//! - refuse the empty string, NUL bytes and backslashes as invalid paths;
//! - resolve exactly the path's lexical meaning (`.` dropped, `..` applied): a relative path
//!   whose `..` climbs above the start is refused, and an absolute path resolves to its
//!   remainder under the most specific root containing it, or is refused;
//! - return a relative path made only of normal components (no `..`, no root, no prefix), so
//!   every later open through the root's directory handle stays inside it;
//! - resolve the path it displays for a resolution back to the same place.
#![no_main]

use std::{
    path::{Component, Path, PathBuf},
    sync::OnceLock,
};

use libfuzzer_sys::fuzz_target;
use switchboard_fs::{
    FsError,
    sandbox::{Resolved, Root, Sandbox},
};

fn sandbox() -> &'static Sandbox {
    static SANDBOX: OnceLock<Sandbox> = OnceLock::new();
    SANDBOX.get_or_init(|| {
        // Harness setup, not input: a failure here is a broken fuzzing machine.
        let dir = std::env::temp_dir().join("switchboard-fuzz-root");
        std::fs::create_dir_all(dir.join("sub")).expect("create the fuzz root");
        let roots = [dir.clone(), dir.join("sub")]
            .iter()
            .map(|d| Root::open(d).expect("open a fuzz root"))
            .collect();
        Sandbox::new(roots).expect("sandbox")
    })
}

/// The lexical meaning of `raw`: its parts with `.` dropped and `..` applied. `None` when a
/// relative path climbs above its start; an absolute one stops at `/`, as the kernel does.
fn lexical(raw: &str) -> Option<Vec<&str>> {
    let absolute = raw.starts_with('/');
    let mut parts = Vec::new();
    for part in raw.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.pop().is_none() && !absolute {
                    return None;
                }
            }
            part => parts.push(part),
        }
    }
    Some(parts)
}

/// A root's path (or alias) as parts, to compare with [`lexical`]'s.
fn parts_of(path: &Path) -> Vec<&str> {
    path.components()
        .filter_map(|c| match c {
            Component::Normal(p) => Some(p.to_str().expect("the fuzz root's path is UTF-8")),
            _ => None,
        })
        .collect()
}

/// Where an absolute path must land: (root path, remainder) under the most specific root.
fn expected_absolute<'a>(sb: &'a Sandbox, parts: &[&'a str]) -> Option<(&'a Path, Vec<&'a str>)> {
    sb.roots()
        .iter()
        .flat_map(|root| {
            std::iter::once(&root.path)
                .chain(root.alias.as_ref())
                .map(move |base| (root, parts_of(base)))
        })
        .filter(|(_, base)| parts.starts_with(base))
        .max_by_key(|(_, base)| base.len())
        .map(|(root, base)| (root.path.as_path(), parts[base.len()..].to_vec()))
}

fn root_of<'a>(sb: &'a Sandbox, resolved: &'a Resolved) -> &'a Path {
    &sb.target(resolved).root.path
}

fuzz_target!(|data: &[u8]| {
    let Ok(raw) = std::str::from_utf8(data) else {
        return;
    };
    let sb = sandbox();
    let result = sb.resolve(raw);
    if raw.is_empty() || raw.contains(['\0', '\\']) {
        assert!(
            matches!(result, Err(FsError::InvalidPath { .. })),
            "{raw:?}: {result:?}"
        );
        return;
    }
    let expected = lexical(raw);
    if raw.starts_with('/') {
        let parts = expected.expect("an absolute path always has a lexical meaning");
        match (expected_absolute(sb, &parts), &result) {
            (Some((root, rest)), Ok(resolved)) => {
                assert_eq!(root_of(sb, resolved), root, "{raw:?}: the wrong root");
                assert_eq!(resolved.rel, rest.iter().collect::<PathBuf>(), "{raw:?}");
            }
            (None, Err(FsError::OutsideRoots { .. })) => {}
            (expected, result) => panic!("{raw:?}: expected {expected:?}, got {result:?}"),
        }
    } else {
        match (expected, &result) {
            (Some(parts), Ok(resolved)) => {
                assert_eq!(resolved.rel, parts.iter().collect::<PathBuf>(), "{raw:?}");
            }
            (None, Err(FsError::OutsideRoots { .. })) => {}
            (expected, result) => panic!("{raw:?}: expected {expected:?}, got {result:?}"),
        }
    }
    let Ok(resolved) = result else { return };
    assert!(
        resolved
            .rel
            .components()
            .all(|c| matches!(c, Component::Normal(_))),
        "{raw:?} resolved to {:?}",
        resolved.rel
    );
    let shown = sb.display_path(&resolved);
    let shown = shown.to_str().expect("a UTF-8 input displays as UTF-8");
    let again = sb
        .resolve(shown)
        .unwrap_or_else(|e| panic!("{raw:?} displays as {shown:?}, which is refused: {e}"));
    assert_eq!(
        sb.display_path(&again),
        sb.display_path(&resolved),
        "{raw:?} displays as {shown:?}, which resolves elsewhere"
    );
});
