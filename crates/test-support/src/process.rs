//! [`ChildGuard`]: child processes of a test die with the test, however it ends.

use std::process::{Child, Command, ExitStatus, Stdio};

/// A child process that is killed (SIGKILL) and reaped when the guard drops — also when the
/// test fails or panics half-way — so a failed run leaves no `cdp` or server process behind.
///
/// Unwinding does not run when the test process itself is killed (a CI timeout, SIGKILL), so
/// a small shell watchdog also kills the child once the test process is gone, as the broker's
/// does.
pub struct ChildGuard {
    child: Child,
    watchdog: Option<Child>,
    reaped: Option<ExitStatus>,
}

impl ChildGuard {
    /// Spawns `command` under a guard; panics with `what` if it cannot be started.
    pub fn spawn(command: &mut Command, what: &str) -> ChildGuard {
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
        ChildGuard::new(child)
    }

    /// Guards a child that is already running.
    pub fn new(child: Child) -> ChildGuard {
        // Exits by itself as soon as the child is gone, so it never outlives it by more than
        // a second; it is killed before the child is reaped (see `kill`), so it cannot signal
        // a process that reused the child's pid.
        let script = r#"
            while kill -0 "$0" 2>/dev/null && kill -0 "$1" 2>/dev/null; do sleep 1; done
            kill -0 "$1" 2>/dev/null && kill -9 "$1" 2>/dev/null
        "#;
        let watchdog = Command::new("sh")
            .arg("-c")
            .arg(script)
            .arg(std::process::id().to_string())
            .arg(child.id().to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok();
        ChildGuard {
            child,
            watchdog,
            reaped: None,
        }
    }

    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// The exit status once the child has ended (then it is reaped), `None` while it runs.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        if let Some(status) = self.reaped {
            return Some(status);
        }
        let status = self.child.try_wait().ok().flatten()?;
        if let Some(mut w) = self.watchdog.take() {
            let _ = w.kill();
            let _ = w.wait();
        }
        self.reaped = Some(status);
        Some(status)
    }

    /// SIGKILL now (a crash, as a test may want mid-stream) and reap; returns how it ended.
    /// Killing an already killed guard returns the first status again.
    pub fn kill(&mut self) -> ExitStatus {
        if let Some(status) = self.reaped {
            return status;
        }
        if let Some(mut w) = self.watchdog.take() {
            let _ = w.kill();
            let _ = w.wait();
        }
        // Fails only when the child already exited; the wait below reaps it either way.
        let _ = self.child.kill();
        let status = self.child.wait().expect("reap the child process");
        self.reaped = Some(status);
        status
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if self.reaped.is_none() {
            if let Some(mut w) = self.watchdog.take() {
                let _ = w.kill();
                let _ = w.wait();
            }
            let _ = self.child.kill();
            // Not `expect`: a panic while unwinding from a failed test would abort the run.
            let _ = self.child.wait();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alive(pid: u32) -> bool {
        // A reaped child is gone; `kill -0` fails for it.
        Command::new("kill")
            .arg("-0")
            .arg(pid.to_string())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    #[test]
    fn a_panicking_test_does_not_leave_its_child_running() {
        let mut sleeper = Command::new("sleep");
        sleeper.arg("600");
        let guard = ChildGuard::spawn(&mut sleeper, "sleep");
        let pid = guard.id();
        assert!(alive(pid));
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
            let _guard = guard;
            panic!("the test fails");
        }));
        assert!(outcome.is_err());
        assert!(!alive(pid), "the child {pid} outlived the failed test");
    }

    #[test]
    fn kill_is_a_crash_and_can_be_repeated() {
        let mut sleeper = Command::new("sleep");
        sleeper.arg("600");
        let mut guard = ChildGuard::spawn(&mut sleeper, "sleep");
        let pid = guard.id();
        let status = guard.kill();
        assert!(!status.success());
        assert_eq!(guard.kill(), status);
        assert!(!alive(pid));
    }
}
