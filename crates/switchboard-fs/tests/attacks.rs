//! The attack-path suite: one test per class of escape from the allowed roots. Each test tries
//! reading, writing and (where it applies) listing or moving, and then checks that nothing
//! outside changed. CVE-2025-53110 (prefix confusion) and CVE-2025-53109 (symlink escape) of
//! the official server are the `prefix_confusion` and `symlink_*` tests.

mod common;

use std::os::unix::fs::symlink;

use common::{harness, read};
use serde_json::json;

#[tokio::test]
async fn dotdot_relative_and_absolute() {
    let h = harness().await;
    for path in [
        "../outside/secret.txt".to_string(),
        "a/../../outside/secret.txt".to_string(),
        format!("{}/../outside/secret.txt", h.root.display()),
        format!("{}/./sub/../../outside/secret.txt", h.root.display()),
    ] {
        h.err("read_text_file", json!({"path": path}), "outside_roots")
            .await;
        h.err(
            "write_file",
            json!({"path": path, "content": "owned"}),
            "outside_roots",
        )
        .await;
    }
    assert_eq!(read(&h.outside().join("secret.txt")), "TOP SECRET");
}

#[tokio::test]
async fn absolute_paths_outside_every_root() {
    let h = harness().await;
    let secret = h.outside().join("secret.txt").display().to_string();
    h.err("read_text_file", json!({"path": secret}), "outside_roots")
        .await;
    h.err(
        "read_text_file",
        json!({"path": "/etc/passwd"}),
        "outside_roots",
    )
    .await;
    h.err("list_directory", json!({"path": "/"}), "outside_roots")
        .await;
    h.err("get_file_info", json!({"path": secret}), "outside_roots")
        .await;
    h.err(
        "write_file",
        json!({"path": secret, "content": "x"}),
        "outside_roots",
    )
    .await;
    h.err("delete_file", json!({"path": secret}), "outside_roots")
        .await;
    assert_eq!(read(&h.outside().join("secret.txt")), "TOP SECRET");
}

/// CVE-2025-53110: `/tmp/x/root` must not admit `/tmp/x/root_evil`.
#[tokio::test]
async fn prefix_confusion() {
    let h = harness().await;
    let evil = h.root.with_file_name("root_evil");
    std::fs::create_dir(&evil).expect("evil dir");
    std::fs::write(evil.join("loot.txt"), "loot").expect("loot");
    let loot = format!("{}_evil/loot.txt", h.root.display());
    h.err("read_text_file", json!({"path": loot}), "outside_roots")
        .await;
    h.err(
        "write_file",
        json!({"path": loot, "content": "x"}),
        "outside_roots",
    )
    .await;
    h.err(
        "list_directory",
        json!({"path": format!("{}_evil", h.root.display())}),
        "outside_roots",
    )
    .await;
    assert_eq!(read(&evil.join("loot.txt")), "loot");
}

/// CVE-2025-53109: a symlink inside the root pointing at a file outside.
#[tokio::test]
async fn symlink_to_a_file_outside() {
    let h = harness().await;
    symlink(h.outside().join("secret.txt"), h.root.join("link.txt")).expect("symlink");
    h.err(
        "read_text_file",
        json!({"path": "link.txt"}),
        "outside_roots",
    )
    .await;
    h.err(
        "read_media_file",
        json!({"path": "link.txt"}),
        "outside_roots",
    )
    .await;
    h.err(
        "edit_file",
        json!({"path": "link.txt", "edits": [{"oldText": "TOP", "newText": "NOT"}]}),
        "outside_roots",
    )
    .await;
    // Writing replaces the link itself (rename over it); it never writes through it.
    h.ok("write_file", json!({"path": "link.txt", "content": "mine"}))
        .await;
    assert_eq!(read(&h.outside().join("secret.txt")), "TOP SECRET");
    assert_eq!(read(&h.root.join("link.txt")), "mine");
}

/// A symlinked parent directory: `root/door -> outside/`.
#[tokio::test]
async fn symlinked_parent_directory() {
    let h = harness().await;
    symlink(h.outside(), h.root.join("door")).expect("symlink");
    h.err(
        "read_text_file",
        json!({"path": "door/secret.txt"}),
        "outside_roots",
    )
    .await;
    h.err("list_directory", json!({"path": "door"}), "outside_roots")
        .await;
    h.err(
        "write_file",
        json!({"path": "door/new.txt", "content": "x"}),
        "outside_roots",
    )
    .await;
    h.err(
        "create_directory",
        json!({"path": "door/newdir"}),
        "outside_roots",
    )
    .await;
    h.err(
        "delete_file",
        json!({"path": "door/secret.txt"}),
        "outside_roots",
    )
    .await;
    h.err(
        "move_file",
        json!({"source": "door/secret.txt", "destination": "stolen.txt"}),
        "outside_roots",
    )
    .await;
    // Searches and trees show the link but never descend into it.
    let found = h
        .ok("search_files", json!({"path": ".", "pattern": "**/*.txt"}))
        .await;
    assert_eq!(found["matches"], json!([]));
    let grep = h
        .ok(
            "search_file_contents",
            json!({"path": ".", "pattern": "SECRET"}),
        )
        .await;
    assert_eq!(grep["matchCount"], json!(0));
    let tree = h.ok("directory_tree", json!({"path": "."})).await;
    assert_eq!(tree["tree"], json!([{"name": "door", "type": "symlink"}]));
    assert!(!h.outside().join("new.txt").exists());
    assert!(!h.outside().join("newdir").exists());
    assert_eq!(read(&h.outside().join("secret.txt")), "TOP SECRET");
}

/// Paths to files that do not exist yet: creating them must not escape either.
#[tokio::test]
async fn nonexistent_targets() {
    let h = harness().await;
    symlink(h.outside(), h.root.join("door")).expect("symlink");
    symlink(h.outside().join("not-yet.txt"), h.root.join("dangling")).expect("dangling");
    h.err(
        "write_file",
        json!({"path": "door/a/b.txt", "content": "x"}),
        "outside_roots",
    )
    .await;
    h.err(
        "create_directory",
        json!({"path": "door/a/b"}),
        "outside_roots",
    )
    .await;
    // Writing to a dangling link replaces the link; the target outside is never created.
    h.ok("write_file", json!({"path": "dangling", "content": "x"}))
        .await;
    assert!(!h.outside().join("not-yet.txt").exists());
    // A missing parent is a clear not_found, not a silent mkdir.
    h.err(
        "write_file",
        json!({"path": "missing/dir/f.txt", "content": "x"}),
        "not_found",
    )
    .await;
    h.ok("write_file", json!({"path": "fresh.txt", "content": "new"}))
        .await;
    assert_eq!(read(&h.root.join("fresh.txt")), "new");
}

#[tokio::test]
async fn windows_separators() {
    let h = harness().await;
    for path in [
        "..\\outside\\secret.txt",
        "sub\\..\\..\\outside",
        "C:\\Windows",
    ] {
        h.err("read_text_file", json!({"path": path}), "invalid_path")
            .await;
        h.err(
            "write_file",
            json!({"path": path, "content": "x"}),
            "invalid_path",
        )
        .await;
    }
}

#[tokio::test]
async fn nul_bytes() {
    let h = harness().await;
    h.err(
        "read_text_file",
        json!({"path": "secret.txt\u{0}.png"}),
        "invalid_path",
    )
    .await;
    h.err(
        "write_file",
        json!({"path": "a\u{0}/../../outside/x", "content": "x"}),
        "invalid_path",
    )
    .await;
}

/// Check-then-use races: while another thread keeps swapping `root/sub` between a real
/// directory and a symlink to `outside/`, no read ever returns the outside content, no write
/// ever lands outside, and no search ever lists an outside name. The assertions hold for every
/// interleaving, so the test does not depend on timing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn races_between_check_and_use() {
    let h = harness().await;
    std::fs::write(h.outside().join("secret.txt"), "TOP SECRET").expect("secret");
    let sub = h.root.join("sub");
    let parked = h.root.join("sub.real");
    std::fs::create_dir(&parked).expect("real dir");
    std::fs::write(parked.join("secret.txt"), "inside").expect("inside file");
    let outside = h.outside();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let swapper = {
        let stop = stop.clone();
        let (sub, parked, outside) = (sub.clone(), parked.clone(), outside.clone());
        std::thread::spawn(move || {
            let link = sub.with_file_name("sub.link");
            let mut swaps = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                // Real directory in place.
                let _ = std::fs::rename(&parked, &sub);
                // Symlink in place (atomically replacing nothing: sub was moved back first).
                let _ = std::fs::rename(&sub, &parked);
                let _ = symlink(&outside, &link);
                let _ = std::fs::rename(&link, &sub);
                let _ = std::fs::remove_file(&sub);
                swaps += 1;
            }
            swaps
        })
    };
    for i in 0..300 {
        let read = h
            .call("read_text_file", json!({"path": "sub/secret.txt"}))
            .await;
        let text = common::text(&read);
        assert!(
            !text.contains("TOP SECRET"),
            "read escaped on iteration {i}"
        );
        let _ = h
            .call(
                "write_file",
                json!({"path": "sub/planted.txt", "content": "x"}),
            )
            .await;
        let search = h
            .call(
                "search_files",
                json!({"path": ".", "pattern": "**/secret.txt"}),
            )
            .await;
        let found = search.structured_content.unwrap_or_default();
        for m in found["matches"].as_array().into_iter().flatten() {
            let m = m.as_str().unwrap_or_default();
            assert!(m.starts_with(&h.root.display().to_string()), "listed {m}");
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let swaps = swapper.join().expect("swapper");
    assert!(swaps > 0);
    assert!(
        !outside.join("planted.txt").exists(),
        "a write landed outside"
    );
    assert_eq!(read(&outside.join("secret.txt")), "TOP SECRET");
}

#[tokio::test]
async fn move_never_overwrites_or_escapes() {
    let h = harness().await;
    std::fs::write(h.root.join("a.txt"), "a").expect("a");
    std::fs::write(h.root.join("b.txt"), "b").expect("b");
    h.err(
        "move_file",
        json!({"source": "a.txt", "destination": "b.txt"}),
        "already_exists",
    )
    .await;
    assert_eq!(read(&h.root.join("b.txt")), "b");
    assert_eq!(read(&h.root.join("a.txt")), "a");
    let outside_dest = h.outside().join("a.txt").display().to_string();
    h.err(
        "move_file",
        json!({"source": "a.txt", "destination": outside_dest}),
        "outside_roots",
    )
    .await;
    h.err(
        "move_file",
        json!({"source": ".", "destination": "x"}),
        "wrong_kind",
    )
    .await;
    h.ok(
        "move_file",
        json!({"source": "a.txt", "destination": "c.txt"}),
    )
    .await;
    assert_eq!(read(&h.root.join("c.txt")), "a");
}

#[tokio::test]
async fn deletes_never_follow_links_or_remove_roots() {
    let h = harness().await;
    symlink(h.outside(), h.root.join("door")).expect("symlink");
    h.err(
        "delete_directory",
        json!({"path": "door", "recursive": true}),
        "wrong_kind",
    )
    .await;
    h.ok("delete_file", json!({"path": "door"})).await;
    assert!(h.outside().join("secret.txt").exists());
    h.err(
        "delete_directory",
        json!({"path": ".", "recursive": true}),
        "wrong_kind",
    )
    .await;
    h.err(
        "delete_directory",
        json!({"path": h.root.display().to_string(), "recursive": true}),
        "wrong_kind",
    )
    .await;
    // A recursive delete of a tree containing a link to outside removes the link only.
    std::fs::create_dir_all(h.root.join("tree/deep")).expect("tree");
    symlink(h.outside(), h.root.join("tree/deep/door")).expect("inner link");
    h.ok(
        "delete_directory",
        json!({"path": "tree", "recursive": true}),
    )
    .await;
    assert!(!h.root.join("tree").exists());
    assert_eq!(read(&h.outside().join("secret.txt")), "TOP SECRET");
}
