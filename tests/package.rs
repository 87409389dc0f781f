//! The Debian package: `scripts/package.sh` builds it from the repository
//! (files in `scripts/package/`), `dpkg-deb` shows its control fields and
//! files; then, as root only (CI runs as root), `dpkg -i` installs it, its
//! files are where the README says, `systemd-analyze verify` accepts the
//! unit, and the installed binary runs with the installed config the way
//! the unit runs it (as the `influx-proxy` user, in `/var/lib/influx-proxy`,
//! stopped by SIGTERM) in front of a real influxd on 127.0.0.1:8086, the
//! address the default config names. `dpkg -r` keeps the spool, `dpkg -P`
//! removes it and the user.
//!
//! The root test changes the machine (a package, a system user, files in
//! `/etc`, `/lib`, `/var/lib`): it refuses to start where any of them
//! already exists (so it never purges someone's installation), and a guard
//! purges the package on drop, also when the test fails.
//!
//! The package is built once per run; `scripts/package.sh` runs
//! `cargo build --release`, a no-op when the release binary is fresh (as it
//! is after `scripts/test.sh`'s release build).

mod common;

use std::net::TcpListener;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::query::run_tool;
use common::*;
use serde_json::Value;

const NAME: &str = "influx-proxy";
const BIN: &str = "/usr/bin/influx-proxy";
const CONFIG: &str = "/etc/influx-proxy/proxy.json";
const UNIT: &str = "/lib/systemd/system/influx-proxy.service";
const DATA: &str = "/var/lib/influx-proxy";
const SPOOL: &str = "/var/lib/influx-proxy/spool";
/// The proxy's address in the default config (`listen_addr` `:7076`).
const PROXY_URL: &str = "http://127.0.0.1:7076";
/// The backend the default config names.
const INFLUXD_PORT: u16 = 8086;
/// A package build when the release binary is fresh takes seconds; a
/// rebuild (sources changed since the last `cargo build --release`) minutes.
const BUILD_LIMIT: Duration = Duration::from_secs(900);
const DPKG_LIMIT: Duration = Duration::from_secs(120);

// ---------------------------------------------------------------------------
// Building the package (once per run).

/// The `.deb`, built once by `scripts/package.sh`; the path it printed.
fn deb() -> &'static Path {
    static DEB: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let built = DEB.get_or_init(|| {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/package.sh");
        let start = Instant::now();
        let args: &[&str] = if release_binary_is_fresh() {
            &["--no-build"]
        } else {
            &[]
        };
        let (code, out, err) = run_tool(script.to_str().unwrap(), args, BUILD_LIMIT);
        eprintln!(
            "scripts/package.sh {args:?}: exit {code:?} after {:?}",
            start.elapsed()
        );
        if code != Some(0) {
            return Err(format!(
                "scripts/package.sh failed (exit {code:?}):\n{err}\n{out}"
            ));
        }
        let path = PathBuf::from(out.lines().last().unwrap_or("").trim());
        if !path.is_file() || path.extension().is_none_or(|e| e != "deb") {
            return Err(format!(
                "scripts/package.sh did not print the path of a .deb: {out:?}"
            ));
        }
        Ok(path)
    });
    match built {
        Ok(p) => p,
        Err(e) => panic!("{e}"),
    }
}

/// Whether `target/release/influx-proxy` is newer than every source it is
/// built from (`src/`, `build.rs`, `Cargo.toml`, `Cargo.lock`): then the
/// package is made from it with `--no-build` (`scripts/test.sh` builds it
/// just before the tests), else `scripts/package.sh` builds it first.
fn release_binary_is_fresh() -> bool {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let Ok(built) =
        std::fs::metadata(target.join("release/influx-proxy")).and_then(|m| m.modified())
    else {
        eprintln!("no release binary yet: scripts/package.sh builds it");
        return false;
    };
    let mut sources: Vec<PathBuf> = files_under(&root.join("src"))
        .into_iter()
        .map(|(p, _)| p)
        .collect();
    sources.extend(["build.rs", "Cargo.toml", "Cargo.lock"].map(|f| root.join(f)));
    let newer: Vec<&PathBuf> = sources
        .iter()
        .filter(|p| {
            std::fs::metadata(p)
                .and_then(|m| m.modified())
                .is_ok_and(|t| t > built)
        })
        .collect();
    if !newer.is_empty() {
        eprintln!(
            "sources changed since the release build ({} files, e.g. {}): scripts/package.sh rebuilds it",
            newer.len(),
            newer[0].display()
        );
    }
    newer.is_empty()
}

/// Runs `program args`, bounded by `limit`; panics unless it exits 0.
/// Returns stdout.
fn run_ok(program: &str, args: &[&str], limit: Duration) -> String {
    let (code, out, err) = run_tool(program, args, limit);
    assert_eq!(
        code,
        Some(0),
        "{program} {args:?} failed (exit {code:?}, None = killed after {limit:?}):\n{err}\n{out}"
    );
    out
}

fn control_field(deb: &Path, field: &str) -> String {
    let out = run_ok(
        "dpkg-deb",
        &["-f", deb.to_str().unwrap(), field],
        Duration::from_secs(20),
    );
    out.trim().to_string()
}

/// `Key=value` lines of a unit file's sections, in order.
fn unit_settings(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#') && !l.starts_with('['))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

fn unit_value<'a>(settings: &'a [(String, String)], key: &str) -> Option<&'a str> {
    settings
        .iter()
        .rev()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// `TimeoutStopSec` of the unit; only the forms it uses are read (`90`,
/// `90s`), anything else fails the test.
fn stop_timeout(settings: &[(String, String)]) -> Duration {
    let v = unit_value(settings, "TimeoutStopSec").expect("the unit sets TimeoutStopSec");
    let secs: u64 = v
        .trim_end_matches('s')
        .parse()
        .unwrap_or_else(|_| panic!("TimeoutStopSec={v}: expected seconds"));
    Duration::from_secs(secs)
}

#[test]
fn package_has_its_control_fields_files_and_unit() {
    let deb = deb();
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(control_field(deb, "Package"), NAME);
    assert_eq!(control_field(deb, "Version"), version);
    let arch = run_ok("dpkg", &["--print-architecture"], Duration::from_secs(10));
    assert_eq!(control_field(deb, "Architecture"), arch.trim());
    assert!(
        deb.file_name().unwrap().to_str().unwrap()
            == format!("{NAME}_{version}_{}.deb", arch.trim()),
        "{}",
        deb.display()
    );
    assert!(
        deb.starts_with(Path::new(env!("CARGO_MANIFEST_DIR")).join("target"))
            || std::env::var_os("CARGO_TARGET_DIR").is_some(),
        "the .deb is under target/: {}",
        deb.display()
    );
    let depends = control_field(deb, "Depends");
    assert!(depends.contains("libc6 (>= "), "Depends: {depends}");
    assert!(depends.contains("adduser"), "Depends: {depends}");
    assert!(!control_field(deb, "Maintainer").is_empty());
    assert!(control_field(deb, "Description").contains("InfluxDB"));

    // Control members, then the file list with owners and modes.
    let info = run_ok(
        "dpkg-deb",
        &["-I", deb.to_str().unwrap()],
        Duration::from_secs(20),
    );
    for member in [
        "control",
        "md5sums",
        "conffiles",
        "postinst",
        "prerm",
        "postrm",
    ] {
        assert!(
            info.lines()
                .any(|l| l.split_whitespace().any(|w| w == member)),
            "control member {member} missing:\n{info}"
        );
    }
    let list = run_ok(
        "dpkg-deb",
        &["-c", deb.to_str().unwrap()],
        Duration::from_secs(20),
    );
    let files: Vec<(String, String, String)> = list
        .lines()
        .filter_map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            Some((
                w.first()?.to_string(),
                w.get(1)?.to_string(),
                w.last()?.trim_start_matches('.').to_string(),
            ))
        })
        .collect();
    let mode_of = |path: &str| {
        files
            .iter()
            .find(|(_, _, p)| p == path)
            .map(|(m, o, _)| (m.clone(), o.clone()))
            .unwrap_or_else(|| panic!("{path} is not in the package:\n{list}"))
    };
    assert_eq!(mode_of(BIN), ("-rwxr-xr-x".into(), "root/root".into()));
    assert_eq!(mode_of(CONFIG), ("-rw-r--r--".into(), "root/root".into()));
    assert_eq!(mode_of(UNIT), ("-rw-r--r--".into(), "root/root".into()));
    mode_of("/usr/share/doc/influx-proxy/copyright");
    assert!(
        !files.iter().any(|(_, _, p)| p.starts_with(DATA)),
        "the data folder is made by the postinst, so that `dpkg -r` keeps it:\n{list}"
    );

    // The README names the same places.
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    for path in [BIN, CONFIG, SPOOL, "/var/lib/influx-proxy/log", UNIT] {
        assert!(
            readme.contains(&format!("`{path}`")),
            "README does not name {path}"
        );
    }

    // Unpacked: the md5sums hold, the binary is stripped and runs, the
    // conffile is the config, the unit and the config agree.
    let dir = TempDir::new("deb");
    let root = dir.path().join("root");
    let ctl = root.join("DEBIAN");
    run_ok(
        "dpkg-deb",
        &["-x", deb.to_str().unwrap(), root.to_str().unwrap()],
        Duration::from_secs(60),
    );
    run_ok(
        "dpkg-deb",
        &["-e", deb.to_str().unwrap(), ctl.to_str().unwrap()],
        Duration::from_secs(20),
    );
    let check = format!(
        "cd '{}' && md5sum --quiet --strict -c DEBIAN/md5sums",
        root.display()
    );
    run_ok("sh", &["-c", &check], Duration::from_secs(30));
    let conffiles = std::fs::read_to_string(ctl.join("conffiles")).unwrap();
    assert_eq!(conffiles.trim(), CONFIG);
    let installed_kib: u64 = control_field(deb, "Installed-Size").parse().unwrap();
    let bin = root.join("usr/bin/influx-proxy");
    let bin_kib = std::fs::metadata(&bin).unwrap().len() / 1024;
    assert!(
        installed_kib >= bin_kib && installed_kib < bin_kib + 200,
        "Installed-Size {installed_kib} KiB for a {bin_kib} KiB binary"
    );
    let sections = run_ok(
        "objdump",
        &["-h", bin.to_str().unwrap()],
        Duration::from_secs(30),
    );
    assert!(
        !sections.contains(".debug_info") && sections.contains(".gnu_debuglink"),
        "the packaged binary is stripped, with a debuglink to the split debug info:\n{sections}"
    );
    let shown = run_ok(
        bin.to_str().unwrap(),
        &["-version"],
        Duration::from_secs(10),
    );
    assert!(shown.contains(version), "-version: {shown}");

    let cfg: Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("etc/influx-proxy/proxy.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        cfg["circles"][0]["backends"][0]["url"],
        "http://127.0.0.1:8086"
    );
    assert_eq!(cfg["listen_addr"], ":7076");
    assert_eq!(cfg["data_dir"], SPOOL);
    assert_eq!(cfg["tlog_dir"], "/var/lib/influx-proxy/log");
    let max_connections = cfg["max_connections"].as_u64().unwrap_or(1024);

    let unit =
        std::fs::read_to_string(root.join("lib/systemd/system/influx-proxy.service")).unwrap();
    let s = unit_settings(&unit);
    let expect = [
        (
            "ExecStart",
            "/usr/bin/influx-proxy -config /etc/influx-proxy/proxy.json",
        ),
        ("User", NAME),
        ("Group", NAME),
        ("WorkingDirectory", DATA),
        ("Restart", "on-failure"),
        ("KillSignal", "SIGTERM"),
        ("StandardOutput", "journal"),
        ("StandardError", "journal"),
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ReadWritePaths", DATA),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("WantedBy", "multi-user.target"),
    ];
    for (key, value) in expect {
        assert_eq!(
            unit_value(&s, key),
            Some(value),
            "{key}= in the unit:\n{unit}"
        );
    }
    let nofile: u64 = unit_value(&s, "LimitNOFILE").unwrap().parse().unwrap();
    assert!(
        nofile >= 4 * max_connections,
        "LimitNOFILE={nofile} is not well above max_connections={max_connections}"
    );
    // The stop timeout covers the graceful stop's parts (src/proxy.rs):
    // a query in flight (query_timeout, 60 s by default), the transfer
    // state (2 s), the writers' grace (<= 5 s), the senders' last POSTs (2 s).
    assert!(stop_timeout(&s) >= Duration::from_secs(60 + 2 + 5 + 2));
}

// ---------------------------------------------------------------------------
// Installed (root only).

/// `dpkg-query`'s status of the package, or `None` when dpkg does not know it.
fn package_status() -> Option<String> {
    let (code, out, _) = run_tool(
        "dpkg-query",
        &["-W", "-f=${Status}", NAME],
        Duration::from_secs(20),
    );
    (code == Some(0)).then(|| out.trim().to_string())
}

/// The uid and gid of `user`, from `getent passwd`.
fn user_ids(user: &str) -> Option<(u32, u32, String)> {
    let (code, out, _) = run_tool("getent", &["passwd", user], Duration::from_secs(10));
    if code != Some(0) {
        return None;
    }
    let f: Vec<&str> = out.trim().split(':').collect();
    Some((
        f.get(2)?.parse().ok()?,
        f.get(3)?.parse().ok()?,
        f.get(6)?.to_string(),
    ))
}

fn group_exists(group: &str) -> bool {
    run_tool("getent", &["group", group], Duration::from_secs(10)).0 == Some(0)
}

/// Paths the postinst's `deb-systemd-helper enable` writes (where it exists).
const ENABLEMENT: [&str; 3] = [
    "/etc/systemd/system/multi-user.target.wants/influx-proxy.service",
    "/var/lib/systemd/deb-systemd-helper-enabled/influx-proxy.service.dsh-also",
    "/var/lib/systemd/deb-systemd-helper-enabled/multi-user.target.wants/influx-proxy.service",
];

fn exists(path: &str) -> bool {
    std::fs::symlink_metadata(path).is_ok()
}

/// Files under `dir` (recursively) with their sizes.
fn files_under(dir: &Path) -> Vec<(PathBuf, u64)> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let Ok(meta) = e.metadata() else { continue };
            if meta.is_dir() {
                todo.push(e.path());
            } else {
                out.push((e.path(), meta.len()));
            }
        }
    }
    out.sort();
    out
}

/// Purges the package on drop (after stopping the proxy it started), so a
/// failed test leaves the machine as it found it.
struct Installed {
    proxy: Option<Child>,
}

impl Drop for Installed {
    fn drop(&mut self) {
        if let Some(mut child) = self.proxy.take() {
            terminate(&mut child, Duration::from_secs(5));
        }
        if package_status().is_some_and(|s| !s.ends_with("not-installed")) {
            let (code, out, err) = run_tool("dpkg", &["-P", NAME], DPKG_LIMIT);
            if code != Some(0) || std::thread::panicking() {
                eprintln!("cleanup: dpkg -P {NAME}: exit {code:?}\n{out}{err}");
            }
        }
    }
}

/// Where `program` is on `PATH`, if it is.
fn on_path(program: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|v| v.split_whitespace().nth(1).map(|e| e == "0"))
        })
        .unwrap_or(false)
}

/// Refuses to run where the package, its user or its folders already exist
/// (the test ends with a purge) or where the ports it needs are taken.
fn require_clean_machine() {
    if let Some(status) = package_status() {
        assert!(
            status.ends_with("not-installed"),
            "{NAME} is already on this machine ({status}); the test ends with `dpkg -P`: \
             purge it first or run the test elsewhere"
        );
    }
    assert!(
        user_ids(NAME).is_none() && !group_exists(NAME),
        "the user or group {NAME} already exists; the test's purge would delete it"
    );
    for path in [DATA, "/etc/influx-proxy"] {
        assert!(
            !exists(path),
            "{path} already exists; the test's purge would delete it"
        );
    }
    for addr in ["127.0.0.1:8086", "0.0.0.0:7076"] {
        if let Err(e) = TcpListener::bind(addr) {
            panic!(
                "{addr} is taken ({e}): the package's default config needs influxd on \
                 127.0.0.1:8086 and the proxy on :7076; stop what listens there \
                 (ss -ltnp 'sport = :{}')",
                addr.rsplit(':').next().unwrap_or("")
            );
        }
    }
}

/// Starts the installed binary with the installed config as the unit does:
/// `User=`/`Group=influx-proxy` (setgroups to none, setgid, setuid, what
/// systemd does; the pid stays the proxy's, so SIGTERM reaches it, unlike
/// `runuser` which forks and waits), in `WorkingDirectory`, with a small
/// environment, stdout and stderr to `log` (the journal's stand-in).
fn start_like_the_unit(uid: u32, gid: u32, log: &Path) -> Child {
    let out = std::fs::File::create(log).unwrap();
    let mut cmd = Command::new(BIN);
    cmd.args(["-config", CONFIG])
        .current_dir(DATA)
        .env_clear()
        .env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        )
        .env("HOME", DATA)
        .env("USER", NAME)
        .env("LOGNAME", NAME)
        .uid(uid)
        .gid(gid)
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out);
    // After the uid switch (std runs pre_exec closures last), so the
    // parent-death signal is not reset by the credential change.
    die_with_parent(&mut cmd);
    cmd.spawn()
        .unwrap_or_else(|e| panic!("cannot run {BIN}: {e}"))
}

/// The effective uid of process `pid`.
fn process_uid(pid: u32) -> Option<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|v| v.split_whitespace().nth(1)?.parse().ok())
}

#[test]
fn installed_package_runs_as_its_user_and_purge_removes_it() {
    if !is_root() {
        eprintln!(
            "SKIPPED the install checks: not root (dpkg -i, a system user and files in /etc \
             and /var/lib need root; CI runs as root). The package itself was built and \
             checked by package_has_its_control_fields_files_and_unit."
        );
        return;
    }
    require_clean_machine();
    let deb = deb();
    let influxd = Influxd::start_on_port(INFLUXD_PORT);

    let mut installed = Installed { proxy: None };
    let out = run_ok("dpkg", &["-i", deb.to_str().unwrap()], DPKG_LIMIT);
    eprintln!("dpkg -i:\n{out}");
    assert_eq!(package_status().as_deref(), Some("install ok installed"));

    // Where the README says: binary, conffile (root:influx-proxy 0640:
    // it may hold passwords), unit, data folder owned by the system user.
    let (uid, gid, shell) = user_ids(NAME).expect("the postinst creates the user");
    assert!(uid < 1000, "{NAME} is a system user (uid {uid})");
    assert!(shell.ends_with("nologin"), "{NAME}'s shell: {shell}");
    let bin = std::fs::metadata(BIN).unwrap();
    assert!(
        bin.is_file() && bin.mode() & 0o111 != 0,
        "{BIN} is executable"
    );
    let cfg = std::fs::metadata(CONFIG).unwrap();
    assert_eq!(
        (cfg.uid(), cfg.gid(), cfg.mode() & 0o777),
        (0, gid, 0o640),
        "{CONFIG}"
    );
    assert!(Path::new(UNIT).is_file(), "{UNIT}");
    let data = std::fs::metadata(DATA).unwrap();
    assert_eq!(
        (data.uid(), data.gid(), data.mode() & 0o777),
        (uid, gid, 0o750),
        "{DATA}"
    );
    let conffiles = run_ok(
        "dpkg-query",
        &["-W", "-f=${Conffiles}", NAME],
        Duration::from_secs(20),
    );
    assert!(conffiles.contains(CONFIG), "conffiles: {conffiles}");
    if on_path("deb-systemd-helper").is_some() {
        assert!(exists(ENABLEMENT[0]), "the postinst enables the unit");
    }

    let settings = unit_settings(&std::fs::read_to_string(UNIT).unwrap());
    match on_path("systemd-analyze") {
        Some(_) => {
            let (code, out, err) = run_tool(
                "systemd-analyze",
                &["verify", UNIT],
                Duration::from_secs(60),
            );
            eprintln!("systemd-analyze verify {UNIT}: exit {code:?}\n{out}{err}");
            assert_eq!(code, Some(0), "systemd-analyze verify:\n{out}{err}");
            assert!(
                !format!("{out}{err}").contains("influx-proxy.service:"),
                "systemd-analyze reports on the unit:\n{out}{err}"
            );
        }
        None => eprintln!("systemd-analyze is not installed here: the unit is not verified"),
    }

    // Where systemd runs, the postinst started the service: stop it, the
    // test runs the binary itself.
    if Path::new("/run/systemd/system").exists() {
        if ping_ok(PROXY_URL) {
            eprintln!("systemd runs: the postinst started the service; stopping it");
        }
        run_ok(
            "systemctl",
            &["stop", "influx-proxy"],
            stop_timeout(&settings) + Duration::from_secs(10),
        );
    } else {
        eprintln!("systemd does not run here: the postinst enabled the unit without starting it");
    }

    let logs = TempDir::new("pkg");
    let log = logs.path().join("journal.log");
    let mut child = Some(start_like_the_unit(uid, gid, &log));
    if let Err(e) = wait_started(
        &mut child,
        "the installed proxy",
        &log,
        Duration::from_secs(20),
        || ping_ok(PROXY_URL),
    ) {
        panic!("{e}");
    }
    let child = child.expect("running");
    let pid = child.id();
    installed.proxy = Some(child);
    assert_eq!(process_uid(pid), Some(uid), "the proxy runs as {NAME}");

    // Writes and queries through the proxy reach influxd.
    let created = http_post(
        &format!("{PROXY_URL}/query"),
        &[("q", "CREATE DATABASE pkgdb")],
        &[],
        b"",
    );
    assert_eq!(created.status, 200, "CREATE DATABASE: {}", created.body);
    let points = 100u64;
    let body: String = (0..points)
        .map(|i| format!("pkg_m,host=h{} v={i} {}\n", i % 7, 1_700_000_000 + i))
        .collect();
    let written = http_post(
        &format!("{PROXY_URL}/write"),
        &[("db", "pkgdb"), ("precision", "s")],
        &[],
        body.as_bytes(),
    );
    assert_eq!(written.status, 204, "write: {}", written.body);
    wait_until(Duration::from_secs(20), "the points in influxd", || {
        influxd.count_v("pkgdb", "pkg_m") == points
    });
    let answer = http_get(
        &format!("{PROXY_URL}/query"),
        &[("db", "pkgdb"), ("q", "SELECT count(v) FROM pkg_m")],
    );
    assert_eq!(answer.status, 200, "query: {}", answer.body);
    assert_eq!(
        answer.json()["results"][0]["series"][0]["values"][0][1].as_u64(),
        Some(points),
        "query through the proxy: {}",
        answer.body
    );

    // The spool is under /var/lib/influx-proxy/spool, the proxy's own.
    let spool = Path::new(SPOOL).join(spool_dir_name("influxdb-1-1"));
    let spooled = files_under(&spool);
    assert!(
        spooled.iter().any(|(_, size)| *size > 0),
        "no spool files under {}: {spooled:?}",
        spool.display()
    );
    for (path, _) in files_under(Path::new(DATA)) {
        let owner = std::fs::metadata(&path).unwrap().uid();
        assert_eq!(owner, uid, "{} belongs to {NAME}", path.display());
    }

    // SIGTERM: a graceful stop, exit 0, well within TimeoutStopSec.
    let limit = stop_timeout(&settings);
    let mut child = installed.proxy.take().unwrap();
    let start = Instant::now();
    let status = terminate(&mut child, limit);
    let took = start.elapsed();
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        status.is_some_and(|s| s.success()),
        "SIGTERM: exit {status:?} after {took:?} (TimeoutStopSec {limit:?}); log:\n{text}"
    );
    assert!(
        text.contains("SIGTERM received") && text.contains("stopped"),
        "log:\n{text}"
    );
    eprintln!("SIGTERM: exit 0 after {took:?} (TimeoutStopSec {limit:?})");
    let spooled = files_under(&spool);

    // dpkg -r: the program goes, the data, the config and the user stay.
    run_ok("dpkg", &["-r", NAME], DPKG_LIMIT);
    assert_eq!(
        package_status().as_deref(),
        Some("deinstall ok config-files")
    );
    assert!(
        !exists(BIN) && !exists(UNIT),
        "dpkg -r removes the binary and the unit"
    );
    assert_eq!(files_under(&spool), spooled, "dpkg -r keeps the spool");
    assert!(Path::new(CONFIG).is_file(), "dpkg -r keeps the conffile");
    assert!(user_ids(NAME).is_some(), "dpkg -r keeps the user");

    // dpkg -P: nothing is left.
    run_ok("dpkg", &["-P", NAME], DPKG_LIMIT);
    let status = package_status();
    assert!(
        status
            .as_deref()
            .is_none_or(|s| s.ends_with("not-installed")),
        "dpkg -P forgets the package: {status:?}"
    );
    for path in [DATA, "/etc/influx-proxy"].into_iter().chain(ENABLEMENT) {
        assert!(!exists(path), "dpkg -P removes {path}");
    }
    assert!(user_ids(NAME).is_none(), "dpkg -P removes the user");
    assert!(!group_exists(NAME), "dpkg -P removes the group");
    let overrides = run_ok("dpkg-statoverride", &["--list"], Duration::from_secs(10));
    assert!(
        !overrides.contains(CONFIG),
        "statoverride left: {overrides}"
    );
    drop(installed);
}
