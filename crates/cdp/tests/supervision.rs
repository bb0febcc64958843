//! A stage that stops with an error ends its process non-zero, and the process's last line
//! says which stage and why: an orchestrator restarts it, and whoever reads its log learns the
//! reason from the exit message itself (issue 20, supervision). SIGTERM stops a process cleanly.
//! A stateful stage is not ready until the state of its partitions is restored.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use cdp_test_support::{unique_name, Broker, ChildGuard};

/// A real `cdp engine` process on `broker`, its output in a log file of its own.
struct Engine {
    process: ChildGuard,
    log: PathBuf,
}

impl Engine {
    fn spawn(broker: &Broker, namespace: &str, state_dir: &Path, rust_log: &str) -> Engine {
        Self::spawn_on(broker, namespace, state_dir, rust_log, "127.0.0.1:0")
    }

    /// With its `/healthz`, `/readyz` and `/metrics` on `health`.
    fn spawn_on(
        broker: &Broker,
        namespace: &str,
        state_dir: &Path,
        rust_log: &str,
        health: &str,
    ) -> Engine {
        let log = std::env::temp_dir().join(format!("cdp-{namespace}.log"));
        let file = std::fs::File::create(&log).expect("log file");
        let process = ChildGuard::spawn(
            Command::new(env!("CARGO_BIN_EXE_cdp"))
                .arg("engine")
                .env("CDP_KAFKA__BOOTSTRAP_SERVERS", broker.bootstrap())
                .env("CDP_TOPICS__NAMESPACE", namespace)
                .env("CDP_PROFILE__GROUP_PREFIX", format!("{namespace}-profile"))
                .env("CDP_PROFILE__INSTANCE_ID", namespace)
                .env("CDP_PROFILE__PARTITIONS", "1")
                .env("CDP_PROFILE__STATE_DIR", state_dir)
                .env("CDP_HEALTH__LISTEN", health)
                .env("CDP_PROFILE__QUERY_LISTEN", "127.0.0.1:0")
                .env("RUST_LOG", rust_log)
                .stdin(Stdio::null())
                .stdout(file.try_clone().expect("log file"))
                .stderr(file),
            "cdp engine",
        );
        Engine { process, log }
    }

    fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Its exit status once it ended, within `within` of now (`after` says of what).
    fn exit_within(&mut self, within: Duration, after: &str) -> ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.process.try_wait() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "cdp engine still runs {within:?} after {after}:\n{}",
                self.output()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

#[test]
fn a_stage_that_fails_ends_its_process_with_the_reason() {
    cdp_contract::telemetry::init_for_tests();
    let broker = Broker::start();
    // The engine's state cannot be opened under a file: its stage fails as it starts, after the
    // process is up (listeners bound, topics created).
    let mut engine = Engine::spawn(
        &broker,
        &unique_name("supervised"),
        Path::new("/dev/null/cdp-state"),
        "warn",
    );
    let status = engine.exit_within(Duration::from_secs(120), "its stage failed");
    let output = engine.output();
    assert_eq!(
        status.code(),
        Some(1),
        "exit status {status}; log:\n{output}"
    );
    let last = output.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("error: the profile engine stopped")
            && last.contains("/dev/null/cdp-state"),
        "the last line names the stage and the reason: {last:?}\n{output}"
    );
}

/// SIGTERM (what docker and Kubernetes send) stops the stages and ends the process with 0, the
/// log saying why; before, the process died of the signal at once, with no last commit.
#[test]
fn sigterm_stops_the_stages_and_exits_zero() {
    cdp_contract::telemetry::init_for_tests();
    let broker = Broker::start();
    let namespace = unique_name("terminated");
    let state = std::env::temp_dir().join(format!("cdp-{namespace}-state"));
    let mut engine = Engine::spawn(&broker, &namespace, &state, "info");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !engine.output().contains("stage consuming") {
        assert!(
            engine.process.try_wait().is_none(),
            "cdp engine ended before it consumed:\n{}",
            engine.output()
        );
        assert!(
            Instant::now() < deadline,
            "cdp engine's stage not consuming after 60 s:\n{}",
            engine.output()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let sent = Command::new("kill")
        .arg("-TERM")
        .arg(engine.process.id().to_string())
        .status()
        .expect("run kill");
    assert!(sent.success());
    let status = engine.exit_within(Duration::from_secs(60), "SIGTERM");
    let output = engine.output();
    assert_eq!(status.code(), Some(0), "exit status {status}:\n{output}");
    assert!(
        output.contains("asked to stop (SIGTERM): shutting down"),
        "the log says why it stopped:\n{output}"
    );
    assert!(
        output.contains("stage stopped"),
        "the stage stopped in order:\n{output}"
    );
    let _ = std::fs::remove_dir_all(&state);
}

/// `/readyz` of a stateful stage says `restoring` (503) until the group has given it its
/// partitions and their state is read back, then `ready`: an orchestrator sends it no traffic
/// (the profile lookups) before it can answer them.
#[tokio::test]
async fn a_stateful_stage_is_not_ready_until_its_state_is_restored() {
    cdp_contract::telemetry::init_for_tests();
    let broker = Broker::start();
    let namespace = unique_name("readiness");
    let state = std::env::temp_dir().join(format!("cdp-{namespace}-state"));
    let health = format!("127.0.0.1:{}", cdp_test_support::free_port());
    let engine = Engine::spawn_on(&broker, &namespace, &state, "info", &health);
    let http = reqwest::Client::new();
    let mut seen: Vec<(u16, String)> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        assert!(
            Instant::now() < deadline,
            "not ready within 120 s; answers {seen:?}\n{}",
            engine.output()
        );
        if let Ok(resp) = http.get(format!("http://{health}/readyz")).send().await {
            let code = resp.status().as_u16();
            let body: serde_json::Value = resp.json().await.unwrap_or_default();
            let status = body["stages"][0]["status"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            if seen.last() != Some(&(code, status.clone())) {
                seen.push((code, status));
            }
            if code == 200 {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        seen.contains(&(503, "restoring".to_string())),
        "503 restoring before ready: {seen:?}"
    );
    assert_eq!(seen.last(), Some(&(200, "ready".to_string())), "{seen:?}");
    let output = engine.output();
    assert!(
        output.contains("state restored from the changelog"),
        "ready after the engine restored its partitions:\n{output}"
    );
    drop(engine);
    let _ = std::fs::remove_dir_all(&state);
}
