//! A bound on how long a test that started a broker may run. A test that waits on something
//! that never comes would otherwise hold CI until its own time limit and end with no name to
//! look at: the watchdog ends the test process instead, naming the test and its broker's log, so
//! the run fails in minutes with the reason in the output.

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// Overrides [`DEFAULT_LIMIT`], in seconds (a slow machine, or a debugger session: 0 disables).
pub const LIMIT_ENV: &str = "CDP_TEST_WATCHDOG_SECS";

/// Well above the longest test (the crash tests, about four minutes on two cores under load).
const DEFAULT_LIMIT: Duration = Duration::from_secs(15 * 60);

/// The exit status of a process the watchdog ended: `timeout(1)`'s, so it reads as one.
const EXIT_STATUS: i32 = 124;

/// Watches the calling test until its thread ends. `about` says where to look when it fires
/// (the broker's log).
pub(crate) fn watch_this_test(about: String) {
    let Some(limit) = limit() else { return };
    let test = std::thread::current()
        .name()
        .unwrap_or("a test")
        .to_string();
    let done = Arc::new((Mutex::new(false), Condvar::new()));
    let watched = Arc::clone(&done);
    let spawned = std::thread::Builder::new()
        .name(format!("watchdog of {test}"))
        .spawn(move || {
            let (lock, ended) = &*watched;
            let guard = lock.lock().unwrap_or_else(|e| e.into_inner());
            let (guard, _) = ended
                .wait_timeout_while(guard, limit, |done| !*done)
                .unwrap_or_else(|e| e.into_inner());
            if *guard {
                return;
            }
            // Straight to stderr: the harness captures `eprintln!`, and it never prints a test
            // that does not end.
            let _ = writeln!(
                std::io::stderr(),
                "WATCHDOG: {test} still running after {limit:?} ({LIMIT_ENV} changes the \
                 limit); ending the test process. {about}"
            );
            dump_threads();
            // Again after the stacks, so the end of a long log names the test too.
            let _ = writeln!(
                std::io::stderr(),
                "WATCHDOG: ended the test process: {test} ran longer than {limit:?}."
            );
            std::process::exit(EXIT_STATUS);
        });
    if spawned.is_ok() {
        // Its thread ends after the test's runtime has been dropped: a hang while the test's
        // tasks and Kafka clients are torn down is caught too.
        crate::thread_end::at_thread_end(move || {
            let (lock, ended) = &*done;
            *lock.lock().unwrap_or_else(|e| e.into_inner()) = true;
            ended.notify_all();
        });
    }
}

/// Every thread's stack, from gdb when it is installed: whether the test is parked on a future
/// that never completes or blocked inside a call (a Kafka client's destroy, say). gdb writes to
/// a file: it stops every thread of this process, the reader of a pipe among them.
fn dump_threads() {
    let pid = std::process::id().to_string();
    let mut err = std::io::stderr();
    let path = std::env::temp_dir().join(format!("cdp-watchdog-{pid}.txt"));
    let file = match std::fs::File::create(&path) {
        Ok(f) => f,
        Err(e) => {
            let _ = writeln!(err, "WATCHDOG: no thread stacks ({}: {e})", path.display());
            return;
        }
    };
    let dumped = Command::new("timeout")
        .args(["-k", "10", "120", "gdb", "-p", &pid, "-batch", "-ex"])
        .arg("thread apply all bt")
        .stdin(Stdio::null())
        .stdout(file)
        .stderr(Stdio::null())
        .status();
    match dumped {
        Ok(status) if status.success() => {
            let stacks = std::fs::read_to_string(&path).unwrap_or_default();
            let _ = writeln!(err, "WATCHDOG: the threads of process {pid}:\n{stacks}");
        }
        Ok(status) => {
            let _ = writeln!(err, "WATCHDOG: no thread stacks (gdb: {status})");
        }
        Err(e) => {
            let _ = writeln!(err, "WATCHDOG: no thread stacks (cannot run gdb: {e})");
        }
    }
}

fn limit() -> Option<Duration> {
    match std::env::var(LIMIT_ENV) {
        Ok(v) => match v.trim().parse::<u64>() {
            Ok(0) => None,
            Ok(secs) => Some(Duration::from_secs(secs)),
            Err(_) => panic!("{LIMIT_ENV}={v:?} is not a number of seconds"),
        },
        Err(_) => Some(DEFAULT_LIMIT),
    }
}
