//! A stage that stops with an error ends its process non-zero, and the process's last line
//! says which stage and why: an orchestrator restarts it, and whoever reads its log learns the
//! reason from the exit message itself (issue 20, supervision).

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
