//! Path resolution of the filesystem server: whatever string a client sends, a successful
//! resolution is a root plus a relative path made only of normal components (no `..`, no root,
//! no prefix), so every later open through the root's directory handle stays inside it.

#![no_main]

use std::{path::Component, sync::OnceLock};

use libfuzzer_sys::fuzz_target;
use switchboard_fs::sandbox::{Root, Sandbox};

fn sandbox() -> &'static Sandbox {
    static SANDBOX: OnceLock<Sandbox> = OnceLock::new();
    SANDBOX.get_or_init(|| {
        // Harness setup, not input: a failure here is a broken fuzzing machine.
        let dir = std::env::temp_dir().join("switchboard-fuzz-root");
        std::fs::create_dir_all(dir.join("sub")).expect("create the fuzz root");
        Sandbox::new(vec![Root::open(&dir).expect("open the fuzz root")]).expect("sandbox")
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(raw) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(resolved) = sandbox().resolve(raw) {
        assert!(
            resolved
                .rel
                .components()
                .all(|c| matches!(c, Component::Normal(_))),
            "{raw:?} resolved to {:?}",
            resolved.rel
        );
    }
});
