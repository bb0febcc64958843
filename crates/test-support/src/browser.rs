//! Browser tests: a Node.js script under `tests/browser/` drives Debian's headless Chromium
//! (playwright-core; `tests/browser/launch.mjs`) and reports what it saw as one
//! `CDP-RESULT <json>` line, which the Rust test asserts on. `scripts/browser.sh install`
//! (run by `make test`) installs Chromium, playwright-core and builds the web SDK; a missing
//! piece fails the test with that command, never skips it.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::ChildGuard;

pub const BROWSER_INSTALL_HINT: &str =
    "run `scripts/browser.sh install` (make test does it for you)";

/// The repository's root (this crate lives in `crates/test-support`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("the repository root above crates/test-support")
        .to_path_buf()
}

/// `tests/browser/<name>`.
pub fn browser_script(name: &str) -> PathBuf {
    repo_root().join("tests").join("browser").join(name)
}

/// Where browser tests keep screenshots for people to look at: `target/browser-artefacts/`.
pub fn artefact_dir() -> PathBuf {
    let dir = repo_root().join("target").join("browser-artefacts");
    std::fs::create_dir_all(&dir).expect("create target/browser-artefacts");
    dir
}

/// Runs `node <script>` with `env`, waits up to `timeout`, and returns the value of its
/// `CDP-RESULT` line. Panics with the script's output when it fails, times out or reports
/// nothing.
pub async fn run_script(
    script: &Path,
    env: &[(&str, String)],
    timeout: Duration,
) -> serde_json::Value {
    let root = repo_root();
    assert!(
        root.join("tests/browser/node_modules/playwright-core")
            .exists(),
        "playwright-core is not installed: {BROWSER_INSTALL_HINT}"
    );
    let chromium = std::env::var("CDP_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        Path::new(&chromium).exists(),
        "{chromium} is missing: {BROWSER_INSTALL_HINT}"
    );
    let out_path = std::env::temp_dir().join(format!(
        "cdp-browser-{}-{}.out",
        std::process::id(),
        crate::unique_name("run")
    ));
    let err_path = out_path.with_extension("err");
    let mut command = Command::new("node");
    command
        .arg(script)
        .current_dir(&root)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).expect("browser script stdout file"))
        .stderr(std::fs::File::create(&err_path).expect("browser script stderr file"));
    for (k, v) in env {
        command.env(k, v);
    }
    let mut child = ChildGuard::spawn(&mut command, "node (is Node.js installed?)");
    let deadline = tokio::time::Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait() {
            break Some(status);
        }
        if tokio::time::Instant::now() >= deadline {
            child.kill();
            break None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let stdout = std::fs::read_to_string(&out_path).unwrap_or_default();
    let stderr = std::fs::read_to_string(&err_path).unwrap_or_default();
    let _ = std::fs::remove_file(&out_path);
    let _ = std::fs::remove_file(&err_path);
    let what = script.display();
    match status {
        None => {
            panic!("{what} did not finish within {timeout:?}\nstdout:\n{stdout}\nstderr:\n{stderr}")
        }
        Some(s) if !s.success() => {
            panic!("{what} failed ({s})\nstdout:\n{stdout}\nstderr:\n{stderr}")
        }
        Some(_) => {}
    }
    let line = stdout
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("CDP-RESULT "))
        .unwrap_or_else(|| {
            panic!("{what} reported no CDP-RESULT line\nstdout:\n{stdout}\nstderr:\n{stderr}")
        });
    serde_json::from_str(line)
        .unwrap_or_else(|e| panic!("{what} reported invalid JSON ({e}): {line}"))
}
