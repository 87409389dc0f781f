//! A real HAProxy (Debian's `haproxy` package) in front of proxies, for the
//! tests of a proxy tier: its config is `scripts/haproxy.sh`'s output (the
//! operators' `scripts/haproxy.cfg` with the test's listen address and
//! proxies, nothing hand-written here), it runs in the foreground
//! (`haproxy -db`) on a free loopback port, and is killed on `Drop`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::{file_tail, free_port, ping_ok, spawn_logged, wait_started, TempDir};

const HAPROXY: &str = "haproxy";

/// The generator of the operators' config.
fn generator() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/haproxy.sh")
}

/// A running HAProxy.
pub struct Haproxy {
    child: Option<Child>,
    port: u16,
    log: PathBuf,
    /// Config and log; removed after the process is stopped.
    _dir: TempDir,
}

impl Haproxy {
    /// Generates the config for `proxies` with `scripts/haproxy.sh`, checks
    /// it with `haproxy -c`, starts HAProxy and waits up to 10 s until a
    /// `/ping` through it answers 204 (so at least one proxy is reachable).
    pub fn start(proxies: &[SocketAddr]) -> Haproxy {
        let mut last_error = String::new();
        for _ in 0..3 {
            let dir = TempDir::new("haproxy");
            let port = free_port();
            let config = dir.path().join("haproxy.cfg");
            let text = generate(port, proxies);
            std::fs::write(&config, text).expect("write haproxy config");
            check(&config);
            let log = dir.path().join("haproxy.log");
            let mut cmd = Command::new(HAPROXY);
            cmd.arg("-db").arg("-f").arg(&config);
            let child = spawn_logged(cmd, &log, "haproxy (package haproxy)");
            let mut h = Haproxy {
                child: Some(child),
                port,
                log,
                _dir: dir,
            };
            let url = h.url();
            let what = format!("haproxy on port {port}");
            match wait_started(&mut h.child, &what, &h.log, Duration::from_secs(10), || {
                ping_ok(&url)
            }) {
                Ok(()) => return h,
                Err(e) => last_error = e,
            }
        }
        panic!("haproxy did not start: {last_error}");
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The last lines of what it printed, for failure messages.
    pub fn log_tail(&self, lines: usize) -> String {
        file_tail(&self.log, lines)
    }

    /// Stops it (SIGKILL: it holds nothing worth a clean stop).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "---- haproxy output ----\n{}\n---- end of haproxy output ----",
                self.log_tail(40)
            );
        }
        self.stop();
    }
}

/// `scripts/haproxy.sh -listen 127.0.0.1:<port> <proxies>`: the config text.
pub fn generate(port: u16, proxies: &[SocketAddr]) -> String {
    let out = Command::new("bash")
        .arg(generator())
        .arg("-listen")
        .arg(format!("127.0.0.1:{port}"))
        .args(proxies.iter().map(|a| a.to_string()))
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", generator().display()));
    assert!(
        out.status.success(),
        "{} failed ({}): {}",
        generator().display(),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("haproxy.sh prints text")
}

/// `haproxy -c -f <config>` must accept the file (or the folder's `.cfg`
/// files, read in name order).
pub fn check(config: &Path) {
    let out = Command::new(HAPROXY)
        .arg("-c")
        .arg("-f")
        .arg(config)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {HAPROXY} (package haproxy): {e}"));
    assert!(
        out.status.success(),
        "haproxy -c refused {}: {}{}",
        config.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
