//! A stage that stops with an error ends its process non-zero, and the process's last line
//! says which stage and why: an orchestrator restarts it, and whoever reads its log learns the
//! reason from the exit message itself (issue 20, supervision). SIGTERM stops a process cleanly.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cdp_test_support::{unique_name, Broker, ChildGuard};

#[test]
fn a_stage_that_fails_ends_its_process_with_the_reason() {
    cdp_contract::telemetry::init_for_tests();
    let broker = Broker::start();
    let namespace = unique_name("supervised");
    let log = std::env::temp_dir().join(format!("cdp-{namespace}.log"));
    let file = std::fs::File::create(&log).expect("log file");
    // The engine's state cannot be opened under a file: its stage fails as it starts, after the
    // process is up (listeners bound, topics created).
    let mut engine = ChildGuard::spawn(
        Command::new(env!("CARGO_BIN_EXE_cdp"))
            .arg("engine")
            .env("CDP_KAFKA__BOOTSTRAP_SERVERS", broker.bootstrap())
            .env("CDP_TOPICS__NAMESPACE", &namespace)
            .env("CDP_PROFILE__GROUP_PREFIX", format!("{namespace}-profile"))
            .env("CDP_PROFILE__INSTANCE_ID", "supervised")
            .env("CDP_PROFILE__PARTITIONS", "1")
            .env("CDP_PROFILE__STATE_DIR", "/dev/null/cdp-state")
            .env("CDP_HEALTH__LISTEN", "127.0.0.1:0")
            .env("CDP_PROFILE__QUERY_LISTEN", "127.0.0.1:0")
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("log file"))
            .stderr(file),
        "cdp engine",
    );
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(status) = engine.try_wait() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "cdp engine still runs 2 minutes after its stage failed; log: {}",
            log.display()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let output = std::fs::read_to_string(&log).expect("log");
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
    let log = std::env::temp_dir().join(format!("cdp-{namespace}.log"));
    let state = std::env::temp_dir().join(format!("cdp-{namespace}-state"));
    let file = std::fs::File::create(&log).expect("log file");
    let mut engine = ChildGuard::spawn(
        Command::new(env!("CARGO_BIN_EXE_cdp"))
            .arg("engine")
            .env("CDP_KAFKA__BOOTSTRAP_SERVERS", broker.bootstrap())
            .env("CDP_TOPICS__NAMESPACE", &namespace)
            .env("CDP_PROFILE__GROUP_PREFIX", format!("{namespace}-profile"))
            .env("CDP_PROFILE__INSTANCE_ID", "terminated")
            .env("CDP_PROFILE__PARTITIONS", "1")
            .env("CDP_PROFILE__STATE_DIR", &state)
            .env("CDP_HEALTH__LISTEN", "127.0.0.1:0")
            .env("CDP_PROFILE__QUERY_LISTEN", "127.0.0.1:0")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("log file"))
            .stderr(file),
        "cdp engine",
    );
    let read_log = || std::fs::read_to_string(&log).unwrap_or_default();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !read_log().contains("stage consuming") {
        assert!(
            engine.try_wait().is_none(),
            "cdp engine ended before it consumed:\n{}",
            read_log()
        );
        assert!(
            Instant::now() < deadline,
            "cdp engine's stage not consuming after 60 s:\n{}",
            read_log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let sent = Command::new("kill")
        .arg("-TERM")
        .arg(engine.id().to_string())
        .status()
        .expect("run kill");
    assert!(sent.success());
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = engine.try_wait() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "cdp engine still runs 60 s after SIGTERM:\n{}",
            read_log()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let output = read_log();
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
