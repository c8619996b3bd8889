//! The stdio upstream's process group: each shutdown path (EOF, SIGTERM, SIGKILL), helpers
//! that outlive the leader, and the explicit environment. "Gone" is checked with
//! `kill(-pgid, 0)` failing (ESRCH).

use std::{collections::BTreeMap, time::Duration};

use switchboard_transport::upstream::{
    ProcessGroupChild, ShutdownOutcome, ShutdownTimeouts, StdioCommand, process_group_alive,
};
use tokio::io::AsyncReadExt;

fn sh(script: &str) -> StdioCommand {
    StdioCommand {
        command: "sh".into(),
        args: vec!["-c".into(), script.into()],
        env: BTreeMap::new(),
        env_allowlist: vec!["PATH".into()],
        cwd: None,
    }
}

/// Short graces: these children either exit at once or never do on their own.
const QUICK: ShutdownTimeouts = ShutdownTimeouts {
    stdin_grace: Duration::from_millis(100),
    term_grace: Duration::from_millis(100),
};

async fn run(script: &str, timeouts: ShutdownTimeouts) -> (ShutdownOutcome, i32) {
    let child = ProcessGroupChild::spawn(&sh(script), "test", 1024).expect("spawn");
    let pgid = child.pgid();
    assert!(process_group_alive(pgid));
    let outcome = child.shutdown(timeouts).await.expect("shutdown");
    (outcome, pgid)
}

#[tokio::test]
async fn exits_on_stdin_eof() {
    // `cat` ends when stdin closes, which is step 1 of the sequence. A long grace: the exit
    // is what ends the wait, not the clock.
    let (outcome, pgid) = run(
        "exec cat",
        ShutdownTimeouts {
            stdin_grace: Duration::from_secs(30),
            term_grace: Duration::from_secs(30),
        },
    )
    .await;
    assert_eq!(outcome, ShutdownOutcome::ExitedOnEof);
    assert!(!process_group_alive(pgid));
}

#[tokio::test]
async fn sigterm_when_stdin_is_ignored() {
    let (outcome, pgid) = run("exec sleep 1000", QUICK).await;
    assert_eq!(outcome, ShutdownOutcome::Terminated);
    assert!(!process_group_alive(pgid));
}

#[tokio::test]
async fn sigkill_when_sigterm_is_ignored() {
    // An ignored signal stays ignored across exec.
    let (outcome, pgid) = run("trap '' TERM; exec sleep 1000", QUICK).await;
    assert_eq!(outcome, ShutdownOutcome::Killed);
    assert!(!process_group_alive(pgid));
}

#[tokio::test]
async fn helpers_in_the_group_do_not_survive() {
    // The leader exits on EOF but leaves a background helper in its group. Shutdown signals
    // the helper and returns only once the group is empty (the killed helper is reparented to
    // init, which reaps it) or the grace ran out; a long grace makes the former certain.
    let patient = ShutdownTimeouts {
        stdin_grace: Duration::from_secs(30),
        term_grace: Duration::from_secs(30),
    };
    let (outcome, pgid) = run("sleep 1000 & exec cat", patient).await;
    assert_eq!(outcome, ShutdownOutcome::ExitedOnEof);
    assert!(
        !process_group_alive(pgid),
        "a member of group {pgid} survived"
    );
}

#[tokio::test]
async fn environment_is_explicit() {
    // Cargo sets CARGO_PKG_NAME for the test process; it must not leak to the child.
    let mut spec = sh("printf '%s|%s|%s' \"$CARGO_PKG_NAME\" \"$SB_SET\" \"${PATH:+path}\"");
    spec.env.insert("SB_SET".into(), "given".into());
    let mut child = ProcessGroupChild::spawn(&spec, "test", 1024).expect("spawn");
    let (mut stdout, stdin) = child.take_stdio().expect("pipes");
    drop(stdin);
    let mut out = String::new();
    stdout.read_to_string(&mut out).await.expect("read");
    assert_eq!(out, "|given|path");
    child.shutdown(QUICK).await.expect("shutdown");
}
