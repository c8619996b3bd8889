//! Every tool, through a real MCP client: behaviour, structured output and limits.

mod common;

use std::time::Duration;

use common::{harness, layout, read, start, text};
use serde_json::json;
use switchboard_fs::{Limits, WRITE_TOOLS};

#[tokio::test]
async fn tools_list_matches_the_official_names_and_carries_schemas() {
    let h = harness().await;
    let tools = h.client.list_all_tools().await.expect("tools/list");
    let mut names: Vec<String> = tools.iter().map(|t| t.name.to_string()).collect();
    names.sort();
    for expected in [
        "read_text_file",
        "read_media_file",
        "read_multiple_files",
        "write_file",
        "edit_file",
        "create_directory",
        "list_directory",
        "list_directory_with_sizes",
        "directory_tree",
        "move_file",
        "search_files",
        "get_file_info",
        "list_allowed_directories",
        "delete_file",
        "delete_directory",
        "search_file_contents",
    ] {
        assert!(names.iter().any(|n| n == expected), "missing {expected}");
    }
    for tool in &tools {
        assert!(
            tool.output_schema.is_some(),
            "{} has no outputSchema",
            tool.name
        );
        let annotations = tool.annotations.as_ref().expect("annotations");
        assert!(annotations.read_only_hint.is_some(), "{}", tool.name);
        let read_only = annotations.read_only_hint == Some(true);
        assert_eq!(
            !read_only,
            WRITE_TOOLS.contains(&tool.name.as_ref()),
            "{}: readOnlyHint disagrees with WRITE_TOOLS",
            tool.name
        );
    }
}

#[tokio::test]
async fn read_only_removes_every_writing_tool() {
    let h = start(layout(), true, Limits::default()).await;
    let tools = h.client.list_all_tools().await.expect("tools/list");
    for tool in &tools {
        assert!(
            !WRITE_TOOLS.contains(&tool.name.as_ref()),
            "{} listed",
            tool.name
        );
    }
    let err = h
        .client
        .call_tool(
            rmcp::model::CallToolRequestParams::new("write_file").with_arguments(
                json!({"path": "x", "content": "y"})
                    .as_object()
                    .cloned()
                    .unwrap_or_default(),
            ),
        )
        .await;
    assert!(err.is_err(), "write_file must be unknown in read-only mode");
    assert!(!h.root.join("x").exists());
}

#[tokio::test]
async fn read_text_whole_head_and_tail() {
    let h = harness().await;
    std::fs::write(h.root.join("lines.txt"), "one\ntwo\nthree\nfour\n").expect("write");
    let whole = h.ok("read_text_file", json!({"path": "lines.txt"})).await;
    assert_eq!(whole["content"], "one\ntwo\nthree\nfour\n");
    let head = h
        .ok("read_text_file", json!({"path": "lines.txt", "head": 2}))
        .await;
    assert_eq!(head["content"], "one\ntwo");
    let tail = h
        .ok("read_text_file", json!({"path": "lines.txt", "tail": 2}))
        .await;
    assert_eq!(tail["content"], "three\nfour");
    h.err(
        "read_text_file",
        json!({"path": "lines.txt", "head": 1, "tail": 1}),
        "bad_request",
    )
    .await;
    h.err("read_text_file", json!({"path": "nope.txt"}), "not_found")
        .await;
    h.err("read_text_file", json!({"path": "."}), "wrong_kind")
        .await;
    // The deprecated alias still works.
    let alias = h
        .ok("read_file", json!({"path": h.path("lines.txt")}))
        .await;
    assert_eq!(alias["content"], whole["content"]);
}

#[tokio::test]
async fn binary_files_are_refused_as_text_and_served_as_media() {
    let h = harness().await;
    let png = [
        0x89u8, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 13,
    ];
    std::fs::write(h.root.join("pic.png"), png).expect("png");
    h.err("read_text_file", json!({"path": "pic.png"}), "binary_file")
        .await;
    let result = h.call("read_media_file", json!({"path": "pic.png"})).await;
    assert_eq!(result.is_error, Some(false));
    let structured = result.structured_content.clone().expect("structured");
    assert_eq!(structured["mimeType"], "image/png");
    assert_eq!(structured["size"], 12);
    let image = result.content[0].as_image().expect("an image block");
    assert_eq!(image.mime_type, "image/png");
    assert_eq!(image.data, "iVBORw0KGgoAAAAN");
    std::fs::write(h.root.join("data.bin"), [0u8, 1, 2]).expect("bin");
    let blob = h.ok("read_media_file", json!({"path": "data.bin"})).await;
    assert_eq!(blob["mimeType"], "application/octet-stream");
    assert_eq!(blob["kind"], "resource");
}

#[tokio::test]
async fn read_multiple_reports_failures_inline() {
    let h = harness().await;
    std::fs::write(h.root.join("a.txt"), "A").expect("a");
    let out = h
        .ok(
            "read_multiple_files",
            json!({"paths": ["a.txt", "missing.txt", "/etc/passwd"]}),
        )
        .await;
    assert_eq!(out["files"][0]["content"], "A");
    assert!(
        out["files"][1]["error"]
            .as_str()
            .is_some_and(|e| e.contains("not found"))
    );
    assert!(
        out["files"][2]["error"]
            .as_str()
            .is_some_and(|e| e.contains("outside"))
    );
    h.err("read_multiple_files", json!({"paths": []}), "bad_request")
        .await;
}

#[tokio::test]
async fn write_is_atomic_and_keeps_permissions() {
    use std::os::unix::fs::PermissionsExt;
    let h = harness().await;
    let created = h
        .ok("write_file", json!({"path": "w.txt", "content": "first"}))
        .await;
    assert_eq!(created["created"], true);
    std::fs::set_permissions(h.root.join("w.txt"), std::fs::Permissions::from_mode(0o600))
        .expect("chmod");
    let replaced = h
        .ok("write_file", json!({"path": "w.txt", "content": "second"}))
        .await;
    assert_eq!(replaced["created"], false);
    assert_eq!(read(&h.root.join("w.txt")), "second");
    let mode = std::fs::metadata(h.root.join("w.txt"))
        .expect("meta")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    // No temporary file is left behind.
    let leftovers: Vec<_> = std::fs::read_dir(&h.root)
        .expect("read_dir")
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().ends_with(".sbtmp"))
        .collect();
    assert!(leftovers.is_empty());
    h.err(
        "write_file",
        json!({"path": ".", "content": "x"}),
        "wrong_kind",
    )
    .await;
}

#[tokio::test]
async fn edit_with_dry_run_diff_ambiguity_and_crlf() {
    let h = harness().await;
    std::fs::write(h.root.join("e.txt"), "alpha\nbeta\nalpha\n").expect("write");
    let msg = h
        .err(
            "edit_file",
            json!({"path": "e.txt", "edits": [{"oldText": "alpha", "newText": "gamma"}]}),
            "bad_request",
        )
        .await;
    assert!(msg.contains("occurs 2 times"), "{msg}");
    assert_eq!(read(&h.root.join("e.txt")), "alpha\nbeta\nalpha\n");
    let dry = h
        .ok(
            "edit_file",
            json!({"path": "e.txt", "dryRun": true, "edits": [{"oldText": "beta", "newText": "BETA"}]}),
        )
        .await;
    assert_eq!(dry["applied"], false);
    let diff = dry["diff"].as_str().expect("diff");
    assert!(diff.contains("-beta\n+BETA\n"), "{diff}");
    assert!(diff.starts_with("--- "), "{diff}");
    assert_eq!(read(&h.root.join("e.txt")), "alpha\nbeta\nalpha\n");
    let all = h
        .ok(
            "edit_file",
            json!({"path": "e.txt", "edits": [{"oldText": "alpha", "newText": "gamma", "replaceAll": true}]}),
        )
        .await;
    assert_eq!(all["replacements"], 2);
    assert_eq!(read(&h.root.join("e.txt")), "gamma\nbeta\ngamma\n");
    std::fs::write(h.root.join("crlf.txt"), "a\r\nb\r\n").expect("crlf");
    h.ok(
        "edit_file",
        json!({"path": "crlf.txt", "edits": [{"oldText": "b", "newText": "c"}]}),
    )
    .await;
    assert_eq!(read(&h.root.join("crlf.txt")), "a\r\nc\r\n");
}

#[tokio::test]
async fn directories_listing_sizes_and_tree() {
    let h = harness().await;
    h.ok("create_directory", json!({"path": "d/e/f"})).await;
    let again = h.ok("create_directory", json!({"path": "d/e/f"})).await;
    assert_eq!(again["outcome"], "existed");
    std::fs::write(h.root.join("d/small.txt"), "12").expect("small");
    std::fs::write(h.root.join("d/big.txt"), "x".repeat(2048)).expect("big");
    let listing = h.ok("list_directory", json!({"path": "d"})).await;
    assert_eq!(listing["files"], json!(["big.txt", "small.txt"]));
    assert_eq!(listing["directories"], json!(["e"]));
    assert!(listing.get("symlinks").is_none());
    let result = h.call("list_directory", json!({"path": "d"})).await;
    assert_eq!(text(&result), "[FILE] big.txt\n[DIR] e\n[FILE] small.txt\n");
    let sized = h
        .ok(
            "list_directory_with_sizes",
            json!({"path": "d", "sortBy": "size"}),
        )
        .await;
    assert_eq!(sized["entries"][0]["name"], "big.txt");
    assert_eq!(sized["combinedSize"], 2050);
    assert_eq!(sized["totalFiles"], 2);
    assert_eq!(sized["totalDirectories"], 1);
    let tree = h
        .ok(
            "directory_tree",
            json!({"path": "d", "excludePatterns": ["small.txt"]}),
        )
        .await;
    assert_eq!(
        tree["tree"],
        json!([
            {"name": "big.txt", "type": "file"},
            {"name": "e", "type": "directory", "children": [
                {"name": "f", "type": "directory", "children": []}
            ]}
        ])
    );
    h.err(
        "list_directory",
        json!({"path": "d/small.txt"}),
        "wrong_kind",
    )
    .await;
}

#[tokio::test]
async fn search_files_by_glob_with_excludes() {
    let h = harness().await;
    for f in [
        "a.rs",
        "src/b.rs",
        "src/deep/c.rs",
        "target/d.rs",
        "notes.md",
    ] {
        let p = h.root.join(f);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(p, "fn main() {}\n").expect("write");
    }
    let top = h
        .ok("search_files", json!({"path": ".", "pattern": "*.rs"}))
        .await;
    assert_eq!(top["matches"], json!([h.path("a.rs")]));
    let all = h
        .ok(
            "search_files",
            json!({"path": ".", "pattern": "**/*.rs", "excludePatterns": ["target"]}),
        )
        .await;
    assert_eq!(
        all["matches"],
        json!([h.path("a.rs"), h.path("src/b.rs"), h.path("src/deep/c.rs")])
    );
    assert_eq!(all["truncated"], false);
    let none = h
        .call("search_files", json!({"path": ".", "pattern": "*.zig"}))
        .await;
    assert!(text(&none).contains("No matches found"));
    h.err(
        "search_files",
        json!({"path": ".", "pattern": "[unclosed"}),
        "bad_request",
    )
    .await;
}

#[tokio::test]
async fn search_file_contents_with_context_and_gitignore() {
    let h = harness().await;
    std::fs::write(h.root.join(".gitignore"), "ignored/\n*.log\n").expect("gitignore");
    std::fs::create_dir(h.root.join("ignored")).expect("dir");
    std::fs::write(h.root.join("ignored/x.txt"), "needle\n").expect("x");
    std::fs::write(h.root.join("app.log"), "needle\n").expect("log");
    std::fs::write(h.root.join("main.txt"), "before\nthe Needle here\nafter\n").expect("main");
    std::fs::write(h.root.join("blob.bin"), b"needle\0\0\0").expect("bin");
    let out = h
        .ok(
            "search_file_contents",
            json!({"path": ".", "pattern": "needle", "caseInsensitive": true,
                   "contextLines": 1, "respectGitignore": true}),
        )
        .await;
    assert_eq!(out["matchCount"], 1, "{out}");
    assert_eq!(out["files"][0]["path"], h.path("main.txt"));
    assert_eq!(
        out["files"][0]["lines"],
        json!([
            {"lineNumber": 1, "text": "before", "isMatch": false},
            {"lineNumber": 2, "text": "the Needle here", "isMatch": true},
            {"lineNumber": 3, "text": "after", "isMatch": false}
        ])
    );
    let everything = h
        .ok(
            "search_file_contents",
            json!({"path": ".", "pattern": "needle"}),
        )
        .await;
    // Without gitignore: ignored/x.txt and app.log; the binary file is skipped either way.
    assert_eq!(everything["matchCount"], 2, "{everything}");
    h.err(
        "search_file_contents",
        json!({"path": ".", "pattern": "("}),
        "bad_request",
    )
    .await;
}

#[tokio::test]
async fn file_info_and_allowed_directories() {
    let h = harness().await;
    std::fs::write(h.root.join("i.txt"), "12345").expect("write");
    let info = h.ok("get_file_info", json!({"path": "i.txt"})).await;
    assert_eq!(info["size"], 5);
    assert_eq!(info["isFile"], true);
    assert_eq!(info["isDirectory"], false);
    assert!(info["modified"].as_str().is_some_and(|m| m.contains('T')));
    let dirs = h.ok("list_allowed_directories", json!({})).await;
    assert_eq!(dirs["directories"], json!([h.root.display().to_string()]));
}

#[tokio::test]
async fn deletes() {
    let h = harness().await;
    std::fs::create_dir_all(h.root.join("full/sub")).expect("dirs");
    std::fs::write(h.root.join("full/sub/f"), "x").expect("f");
    h.err("delete_directory", json!({"path": "full"}), "bad_request")
        .await;
    h.err("delete_file", json!({"path": "full"}), "wrong_kind")
        .await;
    h.err(
        "delete_directory",
        json!({"path": "full/sub/f"}),
        "wrong_kind",
    )
    .await;
    h.ok("delete_file", json!({"path": "full/sub/f"})).await;
    h.ok("delete_directory", json!({"path": "full/sub"})).await;
    std::fs::write(h.root.join("full/g"), "x").expect("g");
    h.ok(
        "delete_directory",
        json!({"path": "full", "recursive": true}),
    )
    .await;
    assert!(!h.root.join("full").exists());
    h.err("delete_file", json!({"path": "full/g"}), "not_found")
        .await;
}

#[tokio::test]
async fn limits_give_clear_errors_or_explicit_truncation() {
    let limits = Limits {
        max_read_bytes: 16,
        max_write_bytes: 8,
        max_entries: 3,
        max_tree_depth: 1,
        max_search_results: 2,
        search_time_budget: Duration::from_secs(30),
        max_files_per_call: 2,
    };
    let h = start(layout(), false, limits).await;
    std::fs::write(h.root.join("big.txt"), "0123456789abcdefXYZ\nline2\n").expect("big");
    let msg = h
        .err(
            "read_text_file",
            json!({"path": "big.txt"}),
            "limit_exceeded",
        )
        .await;
    assert!(msg.contains("16 bytes"), "{msg}");
    // head/tail within the limit still work on a file over it.
    let tail = h
        .ok("read_text_file", json!({"path": "big.txt", "tail": 1}))
        .await;
    assert_eq!(tail["content"], "line2");
    h.err(
        "write_file",
        json!({"path": "w", "content": "123456789"}),
        "limit_exceeded",
    )
    .await;
    h.err(
        "read_multiple_files",
        json!({"paths": ["a", "b", "c"]}),
        "limit_exceeded",
    )
    .await;
    for i in 0..4 {
        std::fs::create_dir_all(h.root.join(format!("many/d{i}/inner"))).expect("dir");
    }
    h.err("list_directory", json!({"path": "many"}), "limit_exceeded")
        .await;
    h.err("directory_tree", json!({"path": "many"}), "limit_exceeded")
        .await;
    let shallow = h
        .ok(
            "directory_tree",
            json!({"path": "many", "excludePatterns": ["d2", "d3"]}),
        )
        .await;
    assert_eq!(shallow["tree"][0]["truncated"], true);
    let found = h
        .ok(
            "search_files",
            json!({"path": "many", "pattern": "**/inner"}),
        )
        .await;
    assert_eq!(found["truncated"], true);
    assert_eq!(found["matches"].as_array().map(Vec::len), Some(2));
}
