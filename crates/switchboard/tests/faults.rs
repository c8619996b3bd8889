//! Faults under load against the real `switchboard serve` (issue 11): a stdio upstream killed
//! with SIGKILL while eight clients call it, Redis stopped under load with each
//! `on_redis_error` policy, and upstreams that answer late or never.
//!
//! Which calls are in flight is known by construction, never by timing: each call reads a FIFO
//! in a `switchboard server fs` upstream, and the test holds the FIFO's other end. Opening it
//! for writing returns only once the upstream has opened it for reading, so the call is then
//! inside the upstream, and it ends when the test writes and closes (or kills the upstream).
//! Polling with a generous deadline waits for conditions; nothing asserts on elapsed time.
//!
//! The Redis test starts a private `redis-server` (`REDIS_SERVER`, default `redis-server` on
//! `PATH`) on a free loopback port, so it can stop and restart it without touching the shared
//! one.

mod common;

use std::{
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};

use common::{BIN, alive, args, client, spawn_listening, spawn_listening_in_own_group};
use rmcp::{
    ServiceError,
    model::{CallToolRequestParams, CallToolResult},
};
use serde_json::{Value, json};

type Client = rmcp::service::RunningService<rmcp::RoleClient, rmcp::model::ClientConfig>;

/// Generous: these are deadlines for conditions that hold within milliseconds normally.
const DEADLINE: Duration = Duration::from_secs(30);

/// Polls `condition` until it holds, or fails the test after [`DEADLINE`].
async fn until<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    tokio::time::timeout(DEADLINE, async {
        while !condition().await {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("not within {DEADLINE:?}: {what}"));
}

fn error_kind(result: &CallToolResult) -> Option<String> {
    result.structured_content.as_ref()?["error"]["kind"]
        .as_str()
        .map(String::from)
}

fn text(result: &CallToolResult) -> String {
    result
        .content
        .first()
        .and_then(|c| c.as_text())
        .map(|t| t.text.clone())
        .unwrap_or_default()
}

/// A stdio upstream `NAME`: `switchboard server fs --root DIR`, started through `sh` so each
/// child appends its pid to `NAME.pids` first.
fn fs_upstream(name: &str, dir: &str, extra: &str) -> String {
    format!(
        r#"
[[upstream]]
name = "{name}"
connect = {{ transport = "stdio", command = "sh", args = ["-c", "echo $$ >> {name}.pids; exec \"$0\" --log warn server fs --root {dir}", "{BIN}"] }}
{extra}
"#
    )
}

fn pids(dir: &Path, name: &str) -> Vec<i32> {
    std::fs::read_to_string(dir.join(format!("{name}.pids")))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

/// Live (non-zombie) processes whose process group is `pgid`, from `/proc`.
fn group_members(pgid: i32) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            // After the command's closing parenthesis: state, ppid, pgrp, …
            std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
                let fields: Vec<&str> = stat
                    .rsplit_once(')')
                    .map(|(_, rest)| rest.split_whitespace().collect())
                    .unwrap_or_default();
                fields.first().is_some_and(|state| *state != "Z")
                    && fields.get(2).and_then(|g| g.parse::<i32>().ok()) == Some(pgid)
            })
        })
        .collect()
}

/// Opens `fifo` for writing; returns once a reader (the upstream, inside a call) has it open.
async fn open_writer(fifo: PathBuf) -> std::fs::File {
    tokio::task::spawn_blocking(move || std::fs::File::create(&fifo))
        .await
        .expect("join")
        .expect("open the FIFO for writing")
}

async fn sigterm_and_wait(gateway: &mut common::Listening) {
    let pid = gateway.child.id().expect("gateway pid") as i32;
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(pid).expect("pid"),
        rustix::process::Signal::TERM,
    )
    .expect("SIGTERM");
    let status = gateway.child.wait().await.expect("gateway exit");
    assert!(status.success(), "gateway exited with {status}");
}

fn sigkill(pid: i32) {
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(pid).expect("pid"),
        rustix::process::Signal::KILL,
    )
    .expect("SIGKILL");
}

// ---------------------------------------------------------------------------------------------
// 1. kill -9 of a stdio upstream with calls in flight.

const CLIENTS: usize = 8;
/// Clients with a call inside the upstream when it is killed; the others are between calls.
const IN_FLIGHT_AT_KILL: usize = 5;

/// One of the eight clients: it calls `up__read_text_file` on its own FIFO once per round it
/// is sent, and reports each result.
fn caller(
    client: Arc<Client>,
    index: usize,
    results: tokio::sync::mpsc::UnboundedSender<(usize, usize, Result<CallToolResult, String>)>,
) -> tokio::sync::mpsc::UnboundedSender<usize> {
    let (rounds, mut next) = tokio::sync::mpsc::unbounded_channel::<usize>();
    tokio::spawn(async move {
        while let Some(round) = next.recv().await {
            let result = client
                .call_tool(
                    CallToolRequestParams::new("up__read_text_file")
                        .with_arguments(args(json!({"path": format!("pipe-{index}")}))),
                )
                .await
                .map_err(|e| e.to_string());
            if results.send((index, round, result)).is_err() {
                return;
            }
        }
    });
    rounds
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_upstream_fails_only_the_calls_in_flight_and_comes_back() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    std::fs::create_dir_all(dir.join("a")).expect("a");
    for i in 0..CLIENTS {
        common::make_fifo(&dir.join(format!("a/pipe-{i}")));
    }
    std::fs::write(
        dir.join("gateway.toml"),
        format!(
            "[audit]\nenabled = false\n{}",
            fs_upstream(
                "up",
                "a",
                // No retries: a failed call must surface, not be repeated on the new child.
                // The circuit opens on the in-flight failures and half-opens a second later.
                &format!(
                    "retry = {{ max_attempts = 0 }}\n\
                     circuit = {{ failure_threshold = {IN_FLIGHT_AT_KILL}, open_secs = 1 }}"
                ),
            )
        ),
    )
    .expect("config");
    let mut gateway = spawn_listening_in_own_group(
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--config",
            "gateway.toml",
            "--data-dir",
            "data",
        ],
        dir,
    )
    .await;
    let gateway_group = gateway.child.id().expect("gateway pid") as i32;

    let (results_tx, mut results) = tokio::sync::mpsc::unbounded_channel();
    let mut callers = Vec::new();
    for i in 0..CLIENTS {
        let c = Arc::new(client(&gateway.mcp).await);
        callers.push((c.clone(), caller(c, i, results_tx.clone())));
    }
    drop(results_tx);
    let mut round = 0;
    let mut failures = 0;

    // A round: the chosen clients each send one call, the test serves each call's FIFO (so
    // all of them are inside the upstream at once), and every call must succeed.
    macro_rules! ok_round {
        ($who:expr) => {{
            round += 1;
            let who: Vec<usize> = $who;
            for &i in &who {
                callers[i].1.send(round).expect("caller alive");
            }
            let writers: Vec<_> = who
                .iter()
                .map(|&i| tokio::spawn(open_writer(dir.join(format!("a/pipe-{i}")))))
                .collect();
            for (&i, writer) in who.iter().zip(writers) {
                use std::io::Write;
                let mut writer = writer.await.expect("join");
                writer
                    .write_all(format!("{i}:{round}").as_bytes())
                    .expect("write");
            }
            for _ in &who {
                let (i, r, result) = results.recv().await.expect("a result");
                let result = result.unwrap_or_else(|e| panic!("client {i}: {e}"));
                assert_eq!(result.is_error, Some(false), "client {i}: {result:?}");
                assert_eq!(text(&result), format!("{i}:{r}"));
                assert_eq!(r, round);
            }
        }};
    }

    for _ in 0..3 {
        ok_round!((0..CLIENTS).collect());
    }
    let first_child = *pids(dir, "up").last().expect("the child started");

    // The kill: five clients have a call inside the upstream (their FIFOs are open), three
    // are between calls. Only the five may fail.
    round += 1;
    let in_flight: Vec<usize> = (0..IN_FLIGHT_AT_KILL).collect();
    for &i in &in_flight {
        callers[i].1.send(round).expect("caller alive");
    }
    let mut held = Vec::new();
    for &i in &in_flight {
        held.push(open_writer(dir.join(format!("a/pipe-{i}"))).await);
    }
    sigkill(first_child);
    for _ in &in_flight {
        let (i, _, result) = tokio::time::timeout(DEADLINE, results.recv())
            .await
            .expect("a call in flight at the kill hangs")
            .expect("a result");
        assert!(in_flight.contains(&i));
        let result = result.unwrap_or_else(|e| panic!("client {i}: protocol error {e}"));
        assert_eq!(result.is_error, Some(true), "client {i}: {result:?}");
        assert_eq!(
            error_kind(&result).as_deref(),
            Some("upstream_error"),
            "{result:?}"
        );
        failures += 1;
    }
    drop(held);

    // The circuit opened on those failures (and is open, or half-open after open_secs).
    let status = common::upstream_status(&gateway.base, "up").await;
    assert_eq!(status["circuit_opened"], 1, "{status}");
    assert_ne!(status["circuit"], "closed", "{status}");
    assert!(!alive(first_child), "the killed child was reaped");

    // Once half-open, one probe call restarts the child and closes the circuit…
    let base = gateway.base.clone();
    until("the circuit half-opens", || {
        let base = base.clone();
        async move { common::upstream_status(&base, "up").await["circuit"] == "half_open" }
    })
    .await;
    ok_round!(vec![CLIENTS - 1]);
    let second_child = *pids(dir, "up").last().expect("a new child");
    assert_ne!(second_child, first_child, "the upstream was restarted");
    assert!(alive(second_child));
    let status = common::upstream_status(&gateway.base, "up").await;
    assert_eq!(status["circuit"], "closed", "{status}");
    assert_eq!(status["restarts"], 1, "{status}");
    // …and every client, those whose call failed included, is served again.
    for _ in 0..3 {
        ok_round!((0..CLIENTS).collect());
    }
    assert_eq!(
        failures, IN_FLIGHT_AT_KILL,
        "only the in-flight calls failed"
    );
    assert_eq!(
        common::upstream_status(&gateway.base, "up").await["calls"]["errors"],
        IN_FLIGHT_AT_KILL,
    );

    // SIGTERM: the gateway ends its child, and nothing of its process group (nor of the
    // children's own groups) remains.
    for (c, rounds) in callers {
        drop(rounds);
        if let Ok(c) = Arc::try_unwrap(c) {
            let _ = c.cancel().await;
        }
    }
    sigterm_and_wait(&mut gateway).await;
    let children = pids(dir, "up");
    for &child in &children {
        assert!(!alive(child), "child {child} outlived the gateway");
    }
    for group in std::iter::once(gateway_group).chain(children) {
        assert_eq!(
            group_members(group),
            Vec::<i32>::new(),
            "processes of group {group} outlived the gateway"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// 2. Redis stopped under load.

/// A private `redis-server` on `port` (no persistence), killed on drop.
struct Redis {
    child: tokio::process::Child,
    url: String,
}

impl Redis {
    async fn start(port: u16) -> Redis {
        let program = std::env::var("REDIS_SERVER").unwrap_or_else(|_| "redis-server".into());
        let child = tokio::process::Command::new(&program)
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "could not start {program:?} ({e}): install Redis (`apt-get install \
                     redis-server`) or point REDIS_SERVER at its redis-server binary"
                )
            });
        let url = format!("redis://127.0.0.1:{port}");
        let client = redis::Client::open(url.as_str()).expect("redis URL");
        until("the private redis-server answers PING", || {
            let client = client.clone();
            async move {
                match client.get_multiplexed_async_connection().await {
                    Ok(mut c) => redis::cmd("PING")
                        .query_async::<String>(&mut c)
                        .await
                        .is_ok(),
                    Err(_) => false,
                }
            }
        })
        .await;
        Redis { child, url }
    }

    async fn exists(&self, key: &str) -> bool {
        let client = redis::Client::open(self.url.as_str()).expect("redis URL");
        let mut connection = client
            .get_multiplexed_async_connection()
            .await
            .expect("connect to the private redis");
        redis::cmd("EXISTS")
            .arg(key)
            .query_async::<i64>(&mut connection)
            .await
            .expect("EXISTS")
            == 1
    }

    async fn kill(mut self) {
        self.child.start_kill().expect("SIGKILL redis");
        self.child.wait().await.expect("redis exit");
    }
}

/// How one call through the rate limit ended: "ok", or the JSON-RPC error's `data.kind`.
async fn limited_call(client: &Client) -> String {
    match client
        .call_tool(
            CallToolRequestParams::new("a__echo").with_arguments(args(json!({"message": "hi"}))),
        )
        .await
    {
        Ok(result) if result.is_error != Some(true) => "ok".into(),
        Ok(result) => format!("tool error {result:?}"),
        Err(ServiceError::McpError(error)) => {
            let data = error.data.unwrap_or_default();
            match data["kind"].as_str() {
                Some(kind) => {
                    assert_eq!(data["rule"], "shared", "{data}");
                    kind.to_string()
                }
                None => format!("error {} {data}", error.message),
            }
        }
        Err(other) => format!("failure {other}"),
    }
}

/// Calls made by the load workers: (started after Redis was stopped, outcome).
type Outcomes = Arc<std::sync::Mutex<Vec<(bool, String)>>>;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_stopped_under_load_holds_each_policy_and_recovers() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr").port()
    };
    let redis = Redis::start(port).await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut gateways = Vec::new();
    for policy in ["open", "closed"] {
        // A budget no test reaches, on keys whose TTL outlives the test (100 s per call), so
        // the key's existence shows that Redis decided.
        let config = format!(
            r#"
[audit]
enabled = false

[[upstream]]
name = "a"
builtin = {{ server = "echo" }}

[[security.rate_limit]]
name = "shared"
per = "global"
limit = 1000000
window_secs = 100000000
backend = "redis"
redis_url = "{url}"
key_prefix = "faults:{policy}:"
on_redis_error = "{policy}"
redis_timeout_ms = 2000
"#,
            url = redis.url
        );
        std::fs::write(tmp.path().join(format!("{policy}.toml")), config).expect("config");
        let listening = spawn_listening(
            &[
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--config",
                &format!("{policy}.toml"),
                "--data-dir",
                policy,
            ],
            tmp.path(),
        )
        .await;
        let c = Arc::new(client(&listening.mcp).await);
        gateways.push((policy, listening, c));
    }
    let key = |policy: &str| format!("faults:{policy}:shared:global");

    // Load: four workers per gateway call in a loop until told to stop, noting for each call
    // whether it started after Redis was gone.
    let stopped = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    let mut outcomes: Vec<(Outcomes, Arc<AtomicUsize>)> = Vec::new();
    for (_, _, c) in &gateways {
        let seen: Outcomes = Arc::default();
        let after_stop = Arc::new(AtomicUsize::new(0));
        for _ in 0..4 {
            let (c, seen, after_stop) = (c.clone(), seen.clone(), after_stop.clone());
            let (stopped, stop) = (stopped.clone(), stop.clone());
            workers.push(tokio::spawn(async move {
                while !stop.load(Ordering::SeqCst) {
                    let after = stopped.load(Ordering::SeqCst);
                    let outcome = limited_call(&c).await;
                    if after {
                        after_stop.fetch_add(1, Ordering::SeqCst);
                    }
                    seen.lock().expect("outcomes").push((after, outcome));
                }
            }));
        }
        outcomes.push((seen, after_stop));
    }
    let calls_made = |i: usize| outcomes[i].0.lock().expect("outcomes").len();
    until("calls flow through both gateways", || {
        let ready = calls_made(0) >= 40 && calls_made(1) >= 40;
        async move { ready }
    })
    .await;
    for policy in ["open", "closed"] {
        assert!(redis.exists(&key(policy)).await, "Redis decided ({policy})");
    }

    // Stop Redis in the middle of the load; calls that start after it is gone meet the policy.
    redis.kill().await;
    stopped.store(true, Ordering::SeqCst);
    until("calls are made with Redis gone", || {
        let ready = outcomes
            .iter()
            .all(|(_, after)| after.load(Ordering::SeqCst) >= 20);
        async move { ready }
    })
    .await;
    stop.store(true, Ordering::SeqCst);
    for worker in workers {
        worker.await.expect("worker");
    }
    let open = outcomes[0].0.lock().expect("outcomes").clone();
    let closed = outcomes[1].0.lock().expect("outcomes").clone();
    // fail-open: every call went through, before, during and after the stop.
    for (_, outcome) in &open {
        assert_eq!(outcome, "ok", "on_redis_error = \"open\"");
    }
    // fail-closed: a call that started with Redis gone is refused with the documented kind;
    // one in flight at the stop may have been decided either way.
    for (after, outcome) in &closed {
        if *after {
            assert_eq!(
                outcome, "rate_limit_unavailable",
                "on_redis_error = \"closed\""
            );
        } else {
            assert!(
                outcome == "ok" || outcome == "rate_limit_unavailable",
                "on_redis_error = \"closed\": {outcome}"
            );
        }
    }

    // Redis returns on the same port (empty): both gateways have Redis decide again.
    let redis = Redis::start(port).await;
    let (_, _, open_client) = &gateways[0];
    until(
        "the fail-open gateway's calls are decided by Redis again",
        || {
            let (c, redis, key) = (open_client.clone(), &redis, key("open"));
            async move {
                assert_eq!(limited_call(&c).await, "ok");
                redis.exists(&key).await
            }
        },
    )
    .await;
    let (_, _, closed_client) = &gateways[1];
    until("the fail-closed gateway serves again", || {
        let c = closed_client.clone();
        async move {
            match limited_call(&c).await.as_str() {
                "ok" => true,
                "rate_limit_unavailable" => false,
                other => panic!("on_redis_error = \"closed\": {other}"),
            }
        }
    })
    .await;
    assert!(redis.exists(&key("closed")).await, "Redis decided (closed)");
    for (_, listening, c) in gateways {
        if let Ok(c) = Arc::try_unwrap(c) {
            let _ = c.cancel().await;
        }
        drop(listening);
    }
    redis.kill().await;
}

// ---------------------------------------------------------------------------------------------
// 3. Upstreams that never answer, or answer after the deadline.

/// `/metrics`, once.
async fn metrics(http: &reqwest::Client, base: &str) -> String {
    http.get(format!("{base}/metrics"))
        .send()
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("metrics text")
}

/// The gauge `name` (`switchboard_…`) in `metrics`.
fn gauge(metrics: &str, name: &str) -> u64 {
    let prefix = format!("{name} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {metrics}"))
}

/// The gateway's own tasks: its alive tasks less its open connections, each a task that its
/// client holds open for as long as the client likes (an rmcp client can keep one open after
/// it is closed, with an answer it never read).
async fn own_tasks(http: &reqwest::Client, base: &str) -> u64 {
    let metrics = metrics(http, base).await;
    gauge(&metrics, "switchboard_runtime_alive_tasks")
        .saturating_sub(gauge(&metrics, "switchboard_http_connections_active"))
}

async fn sessions_open(http: &reqwest::Client, base: &str) -> u64 {
    gauge(&metrics(http, base).await, "switchboard_sessions_active")
}

/// Closes `client`'s session and waits until the gateway has no session open and no more
/// tasks of its own than `baseline`. A client's session is tasks too, so the count is
/// compared with the client gone: whatever is still alive beyond `baseline` was left by the
/// calls.
async fn close_and_expect_no_tasks_beyond(
    client: Client,
    http: &reqwest::Client,
    base: &str,
    baseline: u64,
    what: &str,
) {
    let _ = client.cancel().await;
    until("the client's session is closed", || async {
        sessions_open(http, base).await == 0
    })
    .await;
    until(what, || async { own_tasks(http, base).await <= baseline }).await;
}

const HANGING: usize = 6;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hanging_calls_time_out_and_leave_no_tasks_behind() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    std::fs::create_dir_all(dir.join("a")).expect("a");
    for i in 0..HANGING {
        common::make_fifo(&dir.join(format!("a/hang-{i}")));
    }
    std::fs::write(
        dir.join("gateway.toml"),
        format!(
            "[audit]\nenabled = false\n{}",
            fs_upstream(
                "slow",
                "a",
                // One-second deadline; no retries and no circuit, so each call meets the
                // timeout itself.
                "timeout_secs = 1\nretry = { max_attempts = 0 }\n\
                 circuit = { failure_threshold = 1000, open_secs = 1 }",
            )
        ),
    )
    .expect("config");
    let mut gateway = spawn_listening(
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--config",
            "gateway.toml",
            "--data-dir",
            "data",
        ],
        dir,
    )
    .await;
    // One keep-alive connection for the scrapes, so they do not add connection tasks.
    let http = reqwest::Client::new();
    let warm_client = client(&gateway.mcp).await;
    let warm = common::call(&warm_client, "slow__list_allowed_directories", json!({})).await;
    assert_eq!(warm.is_error, Some(false), "{warm:?}");
    let status: Value = http
        .get(format!("{}/api/status", gateway.base))
        .send()
        .await
        .expect("GET /api/status")
        .json()
        .await
        .expect("status JSON");
    assert!(status["runtime_alive_tasks"].as_u64().is_some(), "{status}");
    // The baseline: the upstream connected and used once, no client connected.
    let _ = warm_client.cancel().await;
    until("the warm-up session is closed", || async {
        sessions_open(&http, &gateway.base).await == 0
    })
    .await;
    let before = own_tasks(&http, &gateway.base).await;
    eprintln!("the gateway's own tasks before the hanging calls: {before}");

    // Six calls that hang inside the upstream: each reads a FIFO the test opened and never
    // writes, so the upstream never answers while the test holds it.
    let c = Arc::new(client(&gateway.mcp).await);
    let calls: Vec<_> = (0..HANGING)
        .map(|i| {
            let c = c.clone();
            tokio::spawn(async move {
                c.call_tool(
                    CallToolRequestParams::new("slow__read_text_file")
                        .with_arguments(args(json!({"path": format!("hang-{i}")}))),
                )
                .await
            })
        })
        .collect();
    let mut held = Vec::new();
    for i in 0..HANGING {
        held.push(open_writer(dir.join(format!("a/hang-{i}"))).await);
    }
    for call in calls {
        let result = call
            .await
            .expect("join")
            .expect("a tool result, not a protocol error");
        assert_eq!(result.is_error, Some(true), "{result:?}");
        assert_eq!(
            error_kind(&result).as_deref(),
            Some("upstream_timeout"),
            "{result:?}"
        );
    }
    eprintln!(
        "the gateway's own tasks once they timed out: {}",
        own_tasks(&http, &gateway.base).await
    );
    // The gateway gave up on them: whatever it ran for them has ended, although the upstream
    // still holds all six.
    let c = Arc::try_unwrap(c).unwrap_or_else(|_| panic!("every call has ended"));
    close_and_expect_no_tasks_beyond(
        c,
        &http,
        &gateway.base,
        before,
        "the alive-task count returns to its value before the calls",
    )
    .await;

    // Now the upstream answers all six, late: the answers are dropped, the connection stays
    // usable, and no task is left behind either.
    for mut writer in held {
        use std::io::Write;
        writer.write_all(b"late").expect("write");
    }
    let c = client(&gateway.mcp).await;
    let after = common::call(&c, "slow__list_allowed_directories", json!({})).await;
    assert_eq!(after.is_error, Some(false), "{after:?}");
    let status = common::upstream_status(&gateway.base, "slow").await;
    assert_eq!(status["calls"]["errors"], HANGING, "{status}");
    assert_eq!(status["restarts"], 0, "{status}");
    close_and_expect_no_tasks_beyond(
        c,
        &http,
        &gateway.base,
        before,
        "the alive-task count returns after the late answers",
    )
    .await;

    let children = pids(dir, "slow");
    sigterm_and_wait(&mut gateway).await;
    for child in children {
        assert!(!alive(child), "child {child} outlived the gateway");
    }
}
