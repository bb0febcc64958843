//! Tracing setup: human-readable logs by default, JSON lines with `CDP_LOG_FORMAT=json`, and
//! the level from `RUST_LOG` (default `info`). Colours only on a terminal: `make run > file`
//! or a log collector reading stdout gets plain text.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        EnvFilter::new("info,rdkafka=warn,librdkafka=warn,fjall=warn,lsm_tree=warn")
    });
    let json = std::env::var("CDP_LOG_FORMAT").is_ok_and(|v| v == "json");
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(true)
        .with_ansi(colour());
    // A second init (tests, `cdp up` after a subcommand) is harmless: keep the first.
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

/// For tests: the same filter, written through the test harness's capture so a passing test
/// stays quiet and a failing one shows its logs.
pub fn init_for_tests() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        EnvFilter::new("info,rdkafka=off,librdkafka=off,fjall=warn,lsm_tree=warn")
    });
    // The harness replays captured output on its own stdout, so the same rule applies:
    // `cargo test 2>&1 | tee log` stays readable.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour())
        .with_test_writer()
        .try_init();
}

/// Escape codes only when a person is looking: the logs go to stdout, so colour when stdout
/// is a terminal, unless `NO_COLOR` (https://no-color.org) is set to something.
fn colour() -> bool {
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    std::io::stdout().is_terminal() && !no_color
}
