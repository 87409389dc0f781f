//! A real Prometheus server (Debian's `prometheus` package) for the tests:
//! started on a free loopback port with a temporary data dir and the
//! configuration a test gives, stopped and removed on `Drop`; and
//! `promtool check metrics` on an exposition.
//!
//! The configuration is YAML text in which `{{self}}` stands for the
//! server's own `127.0.0.1:<port>` (a test that scrapes Prometheus itself
//! needs it before the port is known to the caller).

use std::io::Write;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use super::{die_with_parent, file_tail, free_port, http_get, spawn_logged, wait_started, TempDir};

const PROMETHEUS: &str = "prometheus";
const PROMTOOL: &str = "promtool";

/// A running Prometheus server.
pub struct Prometheus {
    child: Option<Child>,
    port: u16,
    log: PathBuf,
    /// Config and data; removed after the server is stopped.
    _dir: TempDir,
}

impl Prometheus {
    /// Starts Prometheus with `config` (YAML; `{{self}}` is replaced by its
    /// own address) and waits up to 30 s until it answers `/-/ready`.
    pub fn start(config: &str) -> Prometheus {
        let mut last_error = String::new();
        for _ in 0..3 {
            let dir = TempDir::new("prometheus");
            let port = free_port();
            let config_path = dir.path().join("prometheus.yml");
            let text = config.replace("{{self}}", &format!("127.0.0.1:{port}"));
            std::fs::write(&config_path, text).expect("write prometheus config");
            let log = dir.path().join("prometheus.log");
            let mut cmd = Command::new(PROMETHEUS);
            cmd.arg(format!("--config.file={}", config_path.display()))
                .arg(format!(
                    "--storage.tsdb.path={}",
                    dir.path().join("data").display()
                ))
                .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                .arg("--web.enable-lifecycle")
                .arg("--log.level=warn");
            let child = spawn_logged(cmd, &log, "prometheus (package prometheus)");
            let mut p = Prometheus {
                child: Some(child),
                port,
                log,
                _dir: dir,
            };
            match p.wait_ready(Duration::from_secs(30)) {
                Ok(()) => return p,
                Err(e) => last_error = e,
            }
        }
        panic!("prometheus did not start: {last_error}");
    }

    fn wait_ready(&mut self, timeout: Duration) -> Result<(), String> {
        let ready_url = format!("{}/-/ready", self.url());
        let what = format!("prometheus on port {}", self.port);
        let ready = || {
            super::agent(Duration::from_secs(2))
                .get(&ready_url)
                .call()
                .map(|r| r.status().as_u16() == 200)
                .unwrap_or(false)
        };
        wait_started(&mut self.child, &what, &self.log, timeout, ready)
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The last lines of its log, for failure messages.
    pub fn log_tail(&self, lines: usize) -> String {
        file_tail(&self.log, lines)
    }

    /// `GET /api/v1/query?query=<promql>`: the `data.result` array (empty
    /// when the answer is not a success).
    pub fn query(&self, promql: &str) -> Vec<Value> {
        let r = http_get(
            &format!("{}/api/v1/query", self.url()),
            &[("query", promql)],
        );
        let v = r.json();
        if v["status"] != "success" {
            return Vec::new();
        }
        v["data"]["result"].as_array().cloned().unwrap_or_default()
    }

    /// `GET /api/v1/query_range` over [`start`, `end`] (Unix seconds) with
    /// `step` seconds: the `data.result` array, or the error text.
    pub fn query_range(
        &self,
        promql: &str,
        start: f64,
        end: f64,
        step: f64,
    ) -> Result<Vec<Value>, String> {
        let r = http_get(
            &format!("{}/api/v1/query_range", self.url()),
            &[
                ("query", promql),
                ("start", &start.to_string()),
                ("end", &end.to_string()),
                ("step", &step.to_string()),
            ],
        );
        let v = r.json();
        if v["status"] != "success" {
            return Err(format!("{v}"));
        }
        Ok(v["data"]["result"].as_array().cloned().unwrap_or_default())
    }

    /// `GET /api/v1/targets`: the active targets (`health`, `lastError`,
    /// `scrapeUrl`, ...).
    pub fn active_targets(&self) -> Vec<Value> {
        let r = http_get(&format!("{}/api/v1/targets", self.url()), &[]);
        r.json()["data"]["activeTargets"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Stops the server (SIGKILL; its data dir is thrown away anyway).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `promtool check metrics` on an exposition (read from stdin): whether it
/// passed, and what promtool printed.
pub fn promtool_check_metrics(exposition: &str) -> (bool, String) {
    let mut cmd = Command::new(PROMTOOL);
    cmd.args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    die_with_parent(&mut cmd);
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {PROMTOOL} (package prometheus): {e}"));
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(exposition.as_bytes())
            .expect("write to promtool");
    }
    let out = child.wait_with_output().expect("wait for promtool");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}
