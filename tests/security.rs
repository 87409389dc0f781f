//! Security: who may use which endpoint (plain and `auth_encrypt`ed
//! credentials, from every source a client can use), real clients with
//! credentials, a client's credentials never reaching a backend or the log,
//! hostile bodies (gzip bombs, absurd `Content-Length`), and backend names
//! that try to lead the spool out of `data_dir`.

mod common;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

use common::query::{influx, require_python_influxdb, run_python_json};
use common::*;
use serde_json::json;

const DELIVERY: Duration = Duration::from_secs(10);
const INFLUX: &str = "/usr/bin/influx";
const AUTH_FAILED: &str = "{\"error\":\"authentication failed\"}\n";
/// The Go proxy's cipher of `admin` (its README; reference 1.4).
const GO_CIPHER_ADMIN: &str = "YgvEyuPZlDYAH8sGDkC!Ag";

// ---------------------------------------------------------------------------
// Helpers.

fn http() -> &'static ureq::Agent {
    static AGENT: OnceLock<ureq::Agent> = OnceLock::new();
    AGENT.get_or_init(|| agent(Duration::from_secs(20)))
}

/// `GET` or `POST` with query parameters, headers and (POST) a body.
fn call(
    method: &str,
    url: &str,
    params: &[(&str, &str)],
    headers: &[(&str, &str)],
    body: &[u8],
) -> Resp {
    http_send(http(), method, url, params, headers, body)
        .unwrap_or_else(|e| panic!("{method} {url}: {e}"))
}

/// Query parameters or headers: (name, value) pairs.
type Pairs<'a> = Vec<(&'a str, &'a str)>;

fn basic(user: &str, pass: &str) -> String {
    format!("Basic {}", base64(format!("{user}:{pass}").as_bytes()))
}

/// One way of presenting credentials (or failing to).
#[derive(Debug, Clone)]
struct Cred {
    what: String,
    params: Vec<(String, String)>,
    headers: Vec<(String, String)>,
}

impl Cred {
    fn params(what: &str, u: Option<&str>, p: Option<&str>) -> Cred {
        let mut params = Vec::new();
        if let Some(u) = u {
            params.push(("u".to_string(), u.to_string()));
        }
        if let Some(p) = p {
            params.push(("p".to_string(), p.to_string()));
        }
        Cred {
            what: what.to_string(),
            params,
            headers: Vec::new(),
        }
    }

    fn header(what: &str, authorization: &str) -> Cred {
        Cred {
            what: what.to_string(),
            params: Vec::new(),
            headers: vec![("Authorization".to_string(), authorization.to_string())],
        }
    }

    fn none() -> Cred {
        Cred {
            what: "no credentials".to_string(),
            params: Vec::new(),
            headers: Vec::new(),
        }
    }
}

/// The three sources the Go proxy accepts, each with `user`/`pass`.
fn good_creds(user: &str, pass: &str) -> Vec<Cred> {
    vec![
        Cred::params("u/p params", Some(user), Some(pass)),
        Cred::header("HTTP Basic", &basic(user, pass)),
        Cred::header("Token user:pass", &format!("Token {user}:{pass}")),
    ]
}

/// Wrong, missing and malformed credentials for the account `user`/`pass`.
fn bad_creds(user: &str, pass: &str) -> Vec<Cred> {
    vec![
        Cred::none(),
        Cred::params("u/p params, wrong user", Some("nobody"), Some(pass)),
        Cred::params("u/p params, wrong password", Some(user), Some("wrong")),
        Cred::params("u param only", Some(user), None),
        Cred::params("p param only", None, Some(pass)),
        Cred::params(
            "u/p params, password with a suffix",
            Some(user),
            Some(&format!("{pass}x")),
        ),
        Cred::params(
            "u/p params, password prefix",
            Some(user),
            Some(&pass[..pass.len() - 1]),
        ),
        Cred::header("Basic, wrong user", &basic("nobody", pass)),
        Cred::header("Basic, wrong password", &basic(user, "wrong")),
        Cred::header("Basic, not base64", "Basic !!!not-base64!!!"),
        Cred::header(
            "Basic, no colon",
            &format!("Basic {}", base64(format!("{user}{pass}").as_bytes())),
        ),
        Cred::header("Basic, empty", "Basic "),
        Cred::header("Token, wrong user", &format!("Token nobody:{pass}")),
        Cred::header("Token, wrong password", &format!("Token {user}:wrong")),
        Cred::header("Token without colon", &format!("Token {user}{pass}")),
        Cred::header("Token, empty", "Token "),
        Cred::header("Bearer scheme", &format!("Bearer {user}:{pass}")),
        Cred::header("bare user:pass", &format!("{user}:{pass}")),
    ]
}

/// One endpoint as a client calls it, and what a permitted call answers.
struct Endpoint {
    method: &'static str,
    path: &'static str,
    params: Vec<(&'static str, String)>,
    body: Vec<u8>,
    /// Whether credentials are checked.
    auth: bool,
    check_ok: fn(&Resp) -> Result<(), String>,
}

impl Endpoint {
    fn name(&self) -> String {
        format!("{} {}", self.method, self.path)
    }

    fn send(&self, base: &str, cred: &Cred) -> Resp {
        let mut params: Vec<(&str, &str)> =
            self.params.iter().map(|(k, v)| (*k, v.as_str())).collect();
        params.extend(cred.params.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let mut headers: Vec<(&str, &str)> = cred
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        if self.method == "POST" && self.path == "/query" {
            headers.push(("Content-Type", "application/x-www-form-urlencoded"));
        }
        call(
            self.method,
            &format!("{base}{}", self.path),
            &params,
            &headers,
            &self.body,
        )
    }
}

fn status_is(r: &Resp, want: u16) -> Result<(), String> {
    if r.status == want {
        Ok(())
    } else {
        Err(format!(
            "status {} (want {want}), body {:?}",
            r.status, r.body
        ))
    }
}

/// The endpoints the router serves (src/server/router.rs), and paths it
/// does not (the Go proxy's `/debug/pprof/`: 404 here).
fn endpoints(db: &str, ping_auth: bool) -> Vec<Endpoint> {
    // No timestamp: each permitted write stores its own point (the proxy's
    // clock), so a refused write that got through would show up as one more.
    let line = "sec_ok,src=matrix v=1\n".to_string();
    vec![
        Endpoint {
            method: "GET",
            path: "/ping",
            params: vec![],
            body: vec![],
            auth: ping_auth,
            check_ok: |r| status_is(r, 204),
        },
        Endpoint {
            method: "POST",
            path: "/write",
            params: vec![("db", db.to_string())],
            body: line.into_bytes(),
            auth: true,
            check_ok: |r| status_is(r, 204),
        },
        Endpoint {
            method: "GET",
            path: "/query",
            params: vec![("q", "SHOW DATABASES".to_string())],
            body: vec![],
            auth: true,
            check_ok: |r| {
                status_is(r, 200)?;
                if r.body.contains("\"databases\"") {
                    Ok(())
                } else {
                    Err(format!("no databases in {:?}", r.body))
                }
            },
        },
        Endpoint {
            method: "POST",
            path: "/query",
            params: vec![],
            body: b"q=SHOW+DATABASES".to_vec(),
            auth: true,
            check_ok: |r| {
                status_is(r, 200)?;
                if r.body.contains("\"databases\"") {
                    Ok(())
                } else {
                    Err(format!("no databases in {:?}", r.body))
                }
            },
        },
        Endpoint {
            method: "GET",
            path: "/health",
            params: vec![],
            body: vec![],
            auth: true,
            check_ok: |r| {
                status_is(r, 200)?;
                if r.json()["circles"].is_array() {
                    Ok(())
                } else {
                    Err(format!("no circles in {:?}", r.body))
                }
            },
        },
        Endpoint {
            method: "GET",
            path: "/replica",
            params: vec![("db", db.to_string()), ("mm", "cpu".to_string())],
            body: vec![],
            auth: true,
            check_ok: |r| {
                status_is(r, 200)?;
                if r.json()[0]["backend"]["name"].is_string() {
                    Ok(())
                } else {
                    Err(format!("no backend in {:?}", r.body))
                }
            },
        },
        // Prometheus remote storage: an empty WriteRequest (snappy of
        // nothing) stores nothing; a read of `up` finds nothing.
        Endpoint {
            method: "POST",
            path: "/api/v1/prom/write",
            params: vec![("db", db.to_string())],
            body: vec![0],
            auth: true,
            check_ok: |r| status_is(r, 204),
        },
        Endpoint {
            method: "POST",
            path: "/api/v1/prom/read",
            params: vec![("db", db.to_string())],
            body: prom_read_of_up(),
            auth: true,
            check_ok: |r| status_is(r, 200),
        },
        // No auth on the cipher endpoints, as the Go proxy (the key is
        // public anyway).
        Endpoint {
            method: "GET",
            path: "/encrypt",
            params: vec![("text", "admin".to_string())],
            body: vec![],
            auth: false,
            check_ok: |r| {
                status_is(r, 200)?;
                if r.body == format!("{GO_CIPHER_ADMIN}\n") {
                    Ok(())
                } else {
                    Err(format!("cipher of admin: {:?}", r.body))
                }
            },
        },
        Endpoint {
            method: "GET",
            path: "/decrypt",
            params: vec![
                ("key", "consistentcipher".to_string()),
                ("text", GO_CIPHER_ADMIN.to_string()),
            ],
            body: vec![],
            auth: false,
            check_ok: |r| {
                status_is(r, 200)?;
                if r.body == "admin\n" {
                    Ok(())
                } else {
                    Err(format!("decrypted: {:?}", r.body))
                }
            },
        },
        // Open unless ping_auth_enabled, as /ping.
        Endpoint {
            method: "GET",
            path: "/metrics",
            params: vec![],
            body: vec![],
            auth: ping_auth,
            check_ok: |r| {
                status_is(r, 200)?;
                match r.header("content-type") {
                    Some("text/plain; version=0.0.4; charset=utf-8") => Ok(()),
                    other => Err(format!("Content-Type {other:?}")),
                }
            },
        },
        // Not served: 404 whatever the credentials (never a 401 that would
        // reveal a protected endpoint, never anything else).
        Endpoint {
            method: "GET",
            path: "/debug/pprof/",
            params: vec![],
            body: vec![],
            auth: false,
            check_ok: |r| status_is(r, 404),
        },
    ]
}

/// A snappy `ReadRequest` of one query for the metric `up`.
fn prom_read_of_up() -> Vec<u8> {
    use influx_proxy::prom::proto::{LabelMatcher, Query, ReadRequest};
    use prost::Message;
    let request = ReadRequest {
        queries: vec![Query {
            start_timestamp_ms: 0,
            end_timestamp_ms: 1,
            matchers: vec![LabelMatcher {
                r#type: 0,
                name: "__name__".into(),
                value: "up".into(),
            }],
        }],
        accepted_response_types: vec![0],
    };
    snap::raw::Encoder::new()
        .compress_vec(&request.encode_to_vec())
        .expect("snappy")
}

fn check_refused(r: &Resp) -> Result<(), String> {
    status_is(r, 401)?;
    if r.body != AUTH_FAILED {
        return Err(format!("401 body {:?}", r.body));
    }
    if r.header("x-influxdb-error") != Some("authentication failed") {
        return Err(format!(
            "401 X-Influxdb-Error {:?}",
            r.header("x-influxdb-error")
        ));
    }
    if !r.is_json() {
        return Err(format!("401 Content-Type {:?}", r.header("content-type")));
    }
    // As the Go proxy: no WWW-Authenticate challenge.
    if let Some(h) = r.header("www-authenticate") {
        return Err(format!("401 with WWW-Authenticate {h:?}"));
    }
    Ok(())
}

/// Runs every endpoint with every good and bad credential; returns the
/// failures (one line each) and the number of requests.
fn credential_matrix(
    base: &str,
    db: &str,
    ping_auth: bool,
    user: &str,
    pass: &str,
) -> (Vec<String>, usize) {
    let mut failures = Vec::new();
    let mut n = 0;
    for ep in endpoints(db, ping_auth) {
        for cred in good_creds(user, pass) {
            n += 1;
            if let Err(e) = (ep.check_ok)(&ep.send(base, &cred)) {
                failures.push(format!("{} with {}: {e}", ep.name(), cred.what));
            }
        }
        for cred in bad_creds(user, pass) {
            n += 1;
            let r = ep.send(base, &cred);
            let verdict = if ep.auth {
                check_refused(&r)
            } else {
                (ep.check_ok)(&r)
            };
            if let Err(e) = verdict {
                let want = if ep.auth { "refused" } else { "open" };
                failures.push(format!(
                    "{} with {} (should be {want}): {e}",
                    ep.name(),
                    cred.what
                ));
            }
        }
    }
    (failures, n)
}

/// `/ping` with `u`/`p` answers 204: readiness of a `ping_auth_enabled` proxy.
fn ping_with(user: &'static str, pass: &'static str) -> impl Fn(&str) -> bool {
    move |base: &str| {
        let a = agent(Duration::from_secs(2));
        matches!(
            a.get(&format!("{base}/ping")).query("u", user).query("p", pass).call(),
            Ok(r) if r.status().as_u16() == 204
        )
    }
}

// ---------------------------------------------------------------------------
// 1. The credential matrix.

#[test]
fn every_endpoint_accepts_each_credential_source_and_refuses_bad_ones() {
    const USER: &str = "admin";
    const PASS: &str = "s3cret-Pw";
    let db = "secm";
    let d = Influxd::start();
    d.create_db(db);
    let mut config = config_for_urls(&[vec![d.url()]]);
    config["username"] = json!(USER);
    config["password"] = json!(PASS);
    let open_ping = Proxy::start(config.clone());
    config["ping_auth_enabled"] = json!(true);
    let ready = ping_with(USER, PASS);
    let closed_ping = Proxy::start_until(config, "-config", &ready);

    let t = Instant::now();
    let (mut failures, mut n) = credential_matrix(&open_ping.url(), db, false, USER, PASS);
    let (more, m) = credential_matrix(&closed_ping.url(), db, true, USER, PASS);
    failures.extend(more.into_iter().map(|f| format!("[ping_auth_enabled] {f}")));
    n += m;

    // u/p are URL parameters only (as in the Go proxy, reference 1.1): in
    // a POST /query form body they are not credentials.
    for p in [&open_ping, &closed_ping] {
        n += 1;
        let r = call(
            "POST",
            &format!("{}/query", p.url()),
            &[],
            &[("Content-Type", "application/x-www-form-urlencoded")],
            format!("q=SHOW+DATABASES&u={USER}&p={PASS}").as_bytes(),
        );
        if let Err(e) = check_refused(&r) {
            failures.push(format!("POST /query with u/p in the form body: {e}"));
        }
    }
    eprintln!("{n} requests in {:?}", t.elapsed());
    assert!(
        failures.is_empty(),
        "{} of {n} credential checks failed:\n{}",
        failures.len(),
        failures.join("\n")
    );

    // The refused writes stored nothing: only the permitted ones arrived.
    // (3 good credentials x 2 proxies, all in measurement sec_ok.)
    wait_until(DELIVERY, "the 6 permitted writes on influxd", || {
        d.rows(db, None, "sec_ok").len() == 6
    });
    holds_for(
        Duration::from_millis(1500),
        "no write with bad credentials is stored (6 rows in sec_ok)",
        || d.rows(db, None, "sec_ok").len() == 6,
    );
}

// ---------------------------------------------------------------------------
// 2. Credentials stored with the Go proxy's cipher.

#[test]
fn encrypted_proxy_and_backend_credentials_use_the_go_cipher() {
    // Any proxy makes ciphers (no auth on /encrypt).
    let helper = Proxy::start(config_for_urls(&[vec![refused_url()]]));
    let encrypt = |text: &str| {
        let r = call(
            "GET",
            &format!("{}/encrypt", helper.url()),
            &[("text", text)],
            &[],
            b"",
        );
        assert_eq!(r.status, 200, "/encrypt?text={text}: {:?}", r.body);
        r.body
            .strip_suffix('\n')
            .expect("cipher ends in \\n")
            .to_string()
    };
    assert_eq!(
        encrypt("admin"),
        GO_CIPHER_ADMIN,
        "the Go proxy's cipher of admin"
    );
    const PASS: &str = "Enc-Pw:42 x";
    const BACKEND_USER: &str = "backend-user";
    const BACKEND_PASS: &str = "backend pw:with colon";
    let pass_cipher = encrypt(PASS);
    let (bu_cipher, bp_cipher) = (encrypt(BACKEND_USER), encrypt(BACKEND_PASS));
    for (plain, cipher) in [
        (PASS, &pass_cipher),
        (BACKEND_USER, &bu_cipher),
        (BACKEND_PASS, &bp_cipher),
    ] {
        assert_ne!(plain, cipher.as_str());
        let r = call(
            "GET",
            &format!("{}/decrypt", helper.url()),
            &[("key", "consistentcipher"), ("text", cipher)],
            &[],
            b"",
        );
        assert_eq!(
            (r.status, r.body.as_str()),
            (200, format!("{plain}\n").as_str()),
            "/decrypt of {cipher}"
        );
    }
    drop(helper);

    let fake = FakeBackend::start(Fault::Record);
    let mut config = config_for_urls(&[vec![fake.url()]]);
    config["username"] = json!(GO_CIPHER_ADMIN);
    config["password"] = json!(pass_cipher);
    config["auth_encrypt"] = json!(true);
    let b = &mut config["circles"][0]["backends"][0];
    b["username"] = json!(bu_cipher);
    b["password"] = json!(bp_cipher);
    b["auth_encrypt"] = json!(true);
    let proxy = Proxy::start(config);
    let health = format!("{}/health", proxy.url());

    // The plain values authenticate, from every source.
    for cred in good_creds("admin", PASS) {
        let params: Vec<(&str, &str)> = cred
            .params
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let headers: Vec<(&str, &str)> = cred
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let r = call("GET", &health, &params, &headers, b"");
        assert_eq!(
            r.status, 200,
            "plain credentials by {}: {:?}",
            cred.what, r.body
        );
    }
    // The cipher text itself is not a password (nor a user name).
    for (u, p) in [
        ("admin", pass_cipher.as_str()),
        (GO_CIPHER_ADMIN, PASS),
        (GO_CIPHER_ADMIN, pass_cipher.as_str()),
        ("admin", "admin"),
    ] {
        for cred in [
            Cred::params("u/p", Some(u), Some(p)),
            Cred::header("Basic", &basic(u, p)),
            Cred::header("Token", &format!("Token {u}:{p}")),
        ] {
            let params: Vec<(&str, &str)> = cred
                .params
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            let headers: Vec<(&str, &str)> = cred
                .headers
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            let r = call("GET", &health, &params, &headers, b"");
            if let Err(e) = check_refused(&r) {
                panic!("user {u:?} password {p:?} by {}: {e}", cred.what);
            }
        }
    }

    // The backend gets its own credentials, decrypted, on writes and pings.
    let r = proxy.write_with(
        &[("db", "enc"), ("u", "admin"), ("p", PASS)],
        &[],
        b"cpu v=1 1\n",
    );
    assert_eq!(r.status, 204, "write with plain credentials: {:?}", r.body);
    wait_until(DELIVERY, "a /write and a /ping at the recorder", || {
        let rec = fake.recorded();
        rec.iter().any(|r| r.path() == "/write") && rec.iter().any(|r| r.path() == "/ping")
    });
    let want = basic(BACKEND_USER, BACKEND_PASS);
    for r in fake.recorded() {
        assert_eq!(
            r.headers.get("authorization"),
            Some(&want),
            "{} {}: the backend's decrypted credentials",
            r.method,
            r.url
        );
        let all = format!("{} {:?}", r.url, r.headers);
        for secret in [&pass_cipher, &bu_cipher, &bp_cipher, &PASS.to_string()] {
            assert!(
                !all.contains(secret.as_str()),
                "{secret:?} reached the backend: {all}"
            );
        }
    }
}

// ---------------------------------------------------------------------------
// 3. Real clients with credentials.

#[test]
fn influx_shell_with_credentials_through_an_auth_proxy() {
    assert!(
        Path::new(INFLUX).exists(),
        "{INFLUX} is missing: install Debian's influxdb-client (scripts/test.sh installs it)"
    );
    const USER: &str = "shelluser";
    const PASS: &str = "Shell-Pw 9";
    let influxds = Influxd::start_many(2);
    let mut config = config_for_urls(&[vec![influxds[0].url()], vec![influxds[1].url()]]);
    config["username"] = json!(USER);
    config["password"] = json!(PASS);
    let proxy = Proxy::start(config);
    let port = proxy.port();
    let t = Instant::now();
    let auth = ["-username", USER, "-password", PASS];
    let with_auth = |args: &[&str]| {
        let mut all = auth.to_vec();
        all.extend_from_slice(args);
        influx(port, &all)
    };

    let (code, out) = with_auth(&["-execute", "CREATE DATABASE sh"]);
    assert_eq!(code, Some(0), "CREATE DATABASE: {out}");
    for d in &influxds {
        assert!(
            d.query("", "SHOW DATABASES").to_string().contains("\"sh\""),
            "sh not created on {}",
            d.url()
        );
    }
    let (code, out) = with_auth(&["-database", "sh", "-execute", "INSERT cpu,host=a value=7"]);
    assert_eq!(code, Some(0), "INSERT: {out}");
    assert!(!out.contains("ERR"), "INSERT: {out}");
    let selected = retry_for(DELIVERY, || {
        let (code, out) = with_auth(&[
            "-database",
            "sh",
            "-format",
            "csv",
            "-execute",
            "SELECT host, value FROM cpu",
        ]);
        assert_eq!(code, Some(0), "SELECT: {out}");
        if out.lines().any(|l| l.ends_with(",a,7")) {
            Ok(())
        } else {
            Err(out)
        }
    });
    if let Err(last) = selected {
        panic!("SELECT through the proxy:\n{last}");
    }

    // Wrong password, wrong user, none: every statement fails.
    for (what, creds) in [
        (
            "wrong password",
            vec!["-username", USER, "-password", "wrong"],
        ),
        ("wrong user", vec!["-username", "nobody", "-password", PASS]),
        ("no credentials", vec![]),
    ] {
        for stmt in [
            "SHOW DATABASES",
            "INSERT cpu,host=bad value=666",
            "SELECT * FROM cpu",
        ] {
            let mut args = creds.clone();
            args.extend_from_slice(&["-database", "sh", "-execute", stmt]);
            let (code, out) = influx(port, &args);
            // The 1.x shell exits 0 after a failed INSERT (it only prints
            // the error); a failed query exits 1.
            if !stmt.starts_with("INSERT") {
                assert_ne!(code, Some(0), "{what}, {stmt}: the shell succeeded:\n{out}");
            }
            assert!(
                out.contains("ERR: ") && out.contains("authentication failed"),
                "{what}, {stmt}: the shell should report the 401:\n{out}"
            );
        }
    }
    holds_for(
        Duration::from_millis(1500),
        "only the authenticated INSERT is stored on every influxd",
        || {
            influxds
                .iter()
                .all(|d| d.rows("sh", None, "cpu").len() == 1)
        },
    );
    eprintln!("influx shell with credentials took {:?}", t.elapsed());
}

/// Good credentials: create_database, write_points, query (polled), then
/// every call with bad credentials; prints one JSON object.
const PY_AUTH_SCRIPT: &str = r#"
from influxdb import InfluxDBClient
from influxdb.exceptions import InfluxDBClientError

port, user, password = int(sys.argv[1]), sys.argv[2], sys.argv[3]
out = {}
c = InfluxDBClient(host="127.0.0.1", port=port, username=user, password=password,
                   database="pyauth", timeout=10, retries=1)
c.create_database("pyauth")
out["write"] = c.write_points([{"measurement": "cpu", "tags": {"host": "a"},
                                "time": 1700000000000000000, "fields": {"v": 1.5}}])
out["points"] = poll(lambda: list(c.query("SELECT * FROM cpu").get_points()), bool)
out["databases"] = sorted(d["name"] for d in c.get_list_database())
bad = {}
for name, (u, p) in {"wrong_password": (user, "wrong"), "wrong_user": ("nobody", password),
                     "default_root": ("root", "root")}.items():
    b = InfluxDBClient(host="127.0.0.1", port=port, username=u, password=p,
                       database="pyauth", timeout=10, retries=1)
    got = {}
    for call, f in (("create_database", lambda: b.create_database("pyauth2")),
                    ("write_points", lambda: b.write_points([{"measurement": "cpu",
                        "tags": {"host": "bad"}, "time": 1700000000000000001, "fields": {"v": 6.0}}])),
                    ("query", lambda: b.query("SELECT * FROM cpu"))):
        try:
            f()
            got[call] = "no error"
        except InfluxDBClientError as e:
            got[call] = [e.code, str(e.content)]
    bad[name] = got
out["bad"] = bad
print(json.dumps(out, sort_keys=True))
"#;

#[test]
fn python_influxdb_client_with_credentials_through_an_auth_proxy() {
    require_python_influxdb();
    const USER: &str = "pyuser";
    const PASS: &str = "Py-Pw&=?x";
    let influxds = Influxd::start_many(2);
    let mut config = config_for_urls(&[vec![influxds[0].url()], vec![influxds[1].url()]]);
    config["username"] = json!(USER);
    config["password"] = json!(PASS);
    let proxy = Proxy::start(config);
    let t = Instant::now();
    let got = run_python_json(
        PY_AUTH_SCRIPT,
        &[&proxy.port().to_string(), USER, PASS],
        Duration::from_secs(90),
    );
    eprintln!("Python session took {:?}", t.elapsed());
    assert_eq!(got["write"], json!(true), "{got}");
    assert_eq!(
        got["points"],
        json!([{"time": "2023-11-14T22:13:20Z", "host": "a", "v": 1.5}]),
        "{got}"
    );
    assert_eq!(got["databases"], json!(["pyauth"]), "{got}");
    for (who, calls) in got["bad"].as_object().expect("bad is an object") {
        for (call, result) in calls.as_object().expect("calls") {
            assert_eq!(
                result[0],
                json!(401),
                "{who} {call}: the client should raise on a 401, got {result}"
            );
            assert!(
                result[1]
                    .as_str()
                    .is_some_and(|s| s.contains("authentication failed")),
                "{who} {call}: {result}"
            );
        }
    }
    for d in &influxds {
        let v = d.query("", "SHOW DATABASES").to_string();
        assert!(
            !v.contains("pyauth2"),
            "an unauthenticated CREATE DATABASE ran on {}: {v}",
            d.url()
        );
        assert_eq!(d.rows("pyauth", None, "cpu").len(), 1, "on {}", d.url());
    }
}

// ---------------------------------------------------------------------------
// 4. A client's credentials never reach a backend.

#[test]
fn client_credentials_never_reach_a_backend() {
    const USER: &str = "cli-admin";
    const PASS: &str = "Client-Secret-5150";
    const BACKEND_USER: &str = "be-user";
    const BACKEND_PASS: &str = "be-pass";
    let bare = FakeBackend::start(Fault::Record);
    let with_creds = FakeBackend::start(Fault::Record);
    let mut config = config_for_urls(&[vec![bare.url()], vec![with_creds.url()]]);
    config["username"] = json!(USER);
    config["password"] = json!(PASS);
    config["circles"][1]["backends"][0]["username"] = json!(BACKEND_USER);
    config["circles"][1]["backends"][0]["password"] = json!(BACKEND_PASS);
    let proxy = Proxy::start(config);
    let client_basic = basic(USER, PASS);
    let client_token = format!("Token {USER}:{PASS}");
    let sources: Vec<(&str, Pairs, Pairs)> = vec![
        ("u/p", vec![("u", USER), ("p", PASS)], vec![]),
        (
            "basic",
            vec![],
            vec![("Authorization", client_basic.as_str())],
        ),
        (
            "token",
            vec![],
            vec![("Authorization", client_token.as_str())],
        ),
    ];
    let queries = [
        "SELECT * FROM cpu",
        "SHOW MEASUREMENTS",
        "SELECT * FROM cpu; SELECT * FROM mem",
        "CREATE DATABASE credtest",
    ];
    let mut sent = 0;
    for (what, params, headers) in &sources {
        let mut p = params.clone();
        p.push(("db", "credtest"));
        let r = call(
            "POST",
            &format!("{}/write", proxy.url()),
            &p,
            headers,
            format!("cpu,src={what} v=1 {}\n", now_ns()).as_bytes(),
        );
        assert_eq!(r.status, 204, "write with {what}: {:?}", r.body);
        for q in queries {
            // GET with q in the URL, POST with q in a form body that also
            // carries u/p (which are never credentials nor forwarded).
            let mut p = params.clone();
            p.extend([("db", "credtest"), ("q", q)]);
            let r = call("GET", &format!("{}/query", proxy.url()), &p, headers, b"");
            assert_ne!(r.status, 401, "GET /query {q:?} with {what}: {:?}", r.body);
            let form = format!(
                "q={}&db=credtest&u={}&p={}",
                q.replace(' ', "+").replace(';', "%3B").replace('*', "%2A"),
                USER,
                PASS
            );
            let r = call(
                "POST",
                &format!("{}/query", proxy.url()),
                params,
                &[
                    headers.clone(),
                    vec![("Content-Type", "application/x-www-form-urlencoded")],
                ]
                .concat(),
                form.as_bytes(),
            );
            assert_ne!(r.status, 401, "POST /query {q:?} with {what}: {:?}", r.body);
            sent += 2;
        }
    }
    let is_query = |r: &Recorded| r.path() == "/query";
    wait_until(
        DELIVERY,
        "writes, queries and pings at both recorders",
        || {
            [&bare, &with_creds].iter().all(|f| {
                let rec = f.recorded();
                rec.iter().filter(|r| r.path() == "/write").count() >= 1
                    && rec.iter().any(is_query)
                    && rec.iter().any(|r| r.path() == "/ping")
            })
        },
    );
    let client_b64 = base64(format!("{USER}:{PASS}").as_bytes());
    let backend_basic = basic(BACKEND_USER, BACKEND_PASS);
    let mut counts = Vec::new();
    for (name, fake, want) in [
        ("backend without credentials", &bare, None),
        (
            "backend with credentials",
            &with_creds,
            Some(&backend_basic),
        ),
    ] {
        let rec = fake.recorded();
        counts.push(format!(
            "{name}: {} writes, {} queries, {} pings",
            rec.iter().filter(|r| r.path() == "/write").count(),
            rec.iter().filter(|r| is_query(r)).count(),
            rec.iter().filter(|r| r.path() == "/ping").count()
        ));
        for r in &rec {
            let desc = format!("{name}: {} {}", r.method, r.url);
            assert_eq!(
                r.headers.get("authorization"),
                want,
                "{desc}: Authorization"
            );
            for (k, v) in r.params() {
                assert!(
                    k != "u" && k != "p",
                    "{desc}: client parameter {k}={v} forwarded"
                );
            }
            let mut everything = format!("{} {:?} ", r.url, r.headers);
            let body = if r
                .headers
                .get("content-encoding")
                .is_some_and(|e| e == "gzip")
            {
                gunzip(&r.body, &desc)
            } else {
                r.body.clone()
            };
            everything.push_str(&String::from_utf8_lossy(&body));
            for secret in [PASS, USER, client_b64.as_str()] {
                assert!(
                    !everything.contains(secret),
                    "{desc}: the client's {secret:?} reached the backend:\n{everything}"
                );
            }
            if r.path() == "/query" && r.method == "POST" {
                let form = String::from_utf8_lossy(&body);
                assert!(
                    !form
                        .split('&')
                        .any(|kv| kv.starts_with("u=") || kv.starts_with("p=")),
                    "{desc}: u/p forwarded in the form {form:?}"
                );
            }
        }
    }
    eprintln!("{sent} client queries; recorded: {}", counts.join("; "));
}

// ---------------------------------------------------------------------------
// 5. Credentials never appear in the log.

#[test]
fn credentials_never_appear_in_the_log() {
    const USER: &str = "log-user-QQ";
    const PASS: &str = "LogPw-Zeta-8812";
    const BACKEND_PASS: &str = "BackendLogPw-4471";
    let wrong = ["WrongPw-Params-1", "WrongPw-Basic-2", "WrongPw-Token-3"];
    let d = Influxd::start();
    d.create_db("logdb");
    let fake = FakeBackend::start(Fault::Record);
    let mut config = config_for_urls(&[vec![d.url()], vec![fake.url()]]);
    config["username"] = json!(USER);
    config["password"] = json!(PASS);
    config["write_tracing"] = json!(true);
    config["query_tracing"] = json!(true);
    config["circles"][1]["backends"][0]["username"] = json!("be");
    config["circles"][1]["backends"][0]["password"] = json!(BACKEND_PASS);
    // Reads go to influxd only (the recorder answers queries with 204).
    config["circles"][1]["backends"][0]["write_only"] = json!(true);
    let proxy = Proxy::start(config);
    let b = basic(USER, PASS);
    let t = format!("Token {USER}:{PASS}");
    let good: Vec<(Pairs, Pairs)> = vec![
        (vec![("u", USER), ("p", PASS)], vec![]),
        (vec![], vec![("Authorization", b.as_str())]),
        (vec![], vec![("Authorization", t.as_str())]),
    ];
    let wb = basic(USER, wrong[1]);
    let wt = format!("Token {USER}:{}", wrong[2]);
    let bad: Vec<(Pairs, Pairs)> = vec![
        (vec![("u", USER), ("p", wrong[0])], vec![]),
        (vec![], vec![("Authorization", wb.as_str())]),
        (vec![], vec![("Authorization", wt.as_str())]),
    ];
    for (i, (params, headers)) in good.iter().enumerate() {
        let mut p = params.clone();
        p.push(("db", "logdb"));
        let body = format!("traced_write_{i},host=a v=1 1700000000000000000\n");
        let r = call(
            "POST",
            &format!("{}/write", proxy.url()),
            &p,
            headers,
            body.as_bytes(),
        );
        assert_eq!(r.status, 204, "write {i}: {:?}", r.body);
        let q = format!("SELECT * FROM traced_query_{i}");
        let mut p = params.clone();
        p.extend([("db", "logdb"), ("q", q.as_str())]);
        let r = call("GET", &format!("{}/query", proxy.url()), &p, headers, b"");
        assert_eq!(r.status, 200, "query {i}: {:?}", r.body);
        // A bad statement (400) and a gzip body too.
        let mut p = params.clone();
        p.extend([("db", "logdb"), ("q", "SHOW USERS")]);
        let r = call("GET", &format!("{}/query", proxy.url()), &p, headers, b"");
        assert_eq!(r.status, 400, "SHOW USERS {i}: {:?}", r.body);
        let mut p = params.clone();
        p.push(("db", "logdb"));
        let mut h = headers.clone();
        h.push(("Content-Encoding", "gzip"));
        let r = call(
            "POST",
            &format!("{}/write", proxy.url()),
            &p,
            &h,
            &gzip(b"gz v=1 1\nbad line\n"),
        );
        assert_eq!(r.status, 400, "partial gzip write {i}: {:?}", r.body);
    }
    for (i, (params, headers)) in bad.iter().enumerate() {
        let mut p = params.clone();
        p.push(("db", "logdb"));
        let r = call(
            "POST",
            &format!("{}/write", proxy.url()),
            &p,
            headers,
            b"refused v=1\n",
        );
        assert_eq!(r.status, 401, "bad write {i}: {:?}", r.body);
        let mut p = params.clone();
        p.extend([("db", "logdb"), ("q", "SELECT * FROM refused")]);
        let r = call("GET", &format!("{}/query", proxy.url()), &p, headers, b"");
        assert_eq!(r.status, 401, "bad query {i}: {:?}", r.body);
    }
    // Deliveries (and their log lines, if any) happen after the flush: all
    // done once both circles hold the traced writes and they are logged.
    let markers: Vec<String> = (0..3)
        .flat_map(|i| [format!("traced_write_{i}"), format!("traced_query_{i}")])
        .collect();
    wait_until(DELIVERY, "the traced writes delivered and logged", || {
        let at_fake: String = fake
            .recorded()
            .iter()
            .filter(|r| r.path() == "/write")
            .map(|r| r.text())
            .collect();
        (0..3).all(|i| {
            let mm = format!("traced_write_{i}");
            at_fake.contains(&mm) && !d.rows("logdb", None, &mm).is_empty()
        }) && markers.iter().all(|m| proxy.log().contains(m.as_str()))
    });
    let log = proxy.log();
    // Tracing is on, so the log does show what was sent: the check below
    // looks where the credentials would be.
    for i in 0..3 {
        for marker in [format!("traced_write_{i}"), format!("traced_query_{i}")] {
            assert!(
                log.contains(&marker),
                "tracing did not log {marker:?}; log:\n{log}"
            );
        }
    }
    let mut secrets: Vec<String> = vec![PASS.into(), BACKEND_PASS.into()];
    secrets.extend(wrong.iter().map(|s| s.to_string()));
    for (u, p) in [(USER, PASS), (USER, wrong[1]), ("be", BACKEND_PASS)] {
        secrets.push(base64(format!("{u}:{p}").as_bytes()));
    }
    for s in &secrets {
        assert!(
            !log.contains(s.as_str()),
            "the log holds the secret {s:?}:\n{log}"
        );
    }
}

// ---------------------------------------------------------------------------
// 6. Hostile bodies.

/// A gzip stream of `members` concatenated members, each 1 MiB of `\n`.
fn gzip_bomb(members: usize) -> Vec<u8> {
    let one = gzip(&vec![b'\n'; 1 << 20]);
    let mut out = Vec::with_capacity(one.len() * members);
    for _ in 0..members {
        out.extend_from_slice(&one);
    }
    out
}

/// Sends `head` then `body` from another thread while this one reads the
/// answer; returns (status, body, time to the answer).
fn send_reading_concurrently(
    addr: SocketAddr,
    head: String,
    body: Vec<u8>,
    timeout: Duration,
) -> (Option<Resp>, Duration) {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).expect("connect");
    s.set_read_timeout(Some(timeout)).unwrap();
    let mut w = s.try_clone().expect("clone");
    let t = Instant::now();
    let writer = thread::spawn(move || {
        let _ = w.write_all(head.as_bytes());
        let _ = w.write_all(&body);
    });
    let got = read_response(&mut s, timeout);
    let took = t.elapsed();
    let _ = s.shutdown(Shutdown::Both);
    let _ = writer.join();
    (parse_raw(&got), took)
}

/// Reads one response (head and `Content-Length` body) or until EOF/timeout.
fn read_response(s: &mut TcpStream, timeout: Duration) -> Vec<u8> {
    let deadline = Instant::now() + timeout;
    let mut got = Vec::new();
    let mut buf = [0u8; 8192];
    while Instant::now() < deadline {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
        if let Some(r) = parse_raw(&got) {
            let len = r
                .header("content-length")
                .and_then(|v| v.parse::<usize>().ok());
            if len.is_some_and(|n| r.body.len() >= n) || (len.is_none() && r.status == 204) {
                break;
            }
        }
    }
    got
}

fn assert_413(r: Option<&Resp>, what: &str) {
    let r = r.unwrap_or_else(|| panic!("{what}: no HTTP answer"));
    assert_error(r, what, 413, "Request Entity Too Large");
}

fn assert_normal_write_works(proxy: &Proxy, d: &Influxd, db: &str, mm: &str) {
    let t = Instant::now();
    let (status, text) = proxy.write(db, None, &format!("{mm},host=a v=1 1700000000000000000\n"));
    assert_eq!(status, 204, "a normal write afterwards: {text:?}");
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "the normal write took {:?}",
        t.elapsed()
    );
    wait_until(DELIVERY, &format!("{mm} on influxd"), || {
        d.rows(db, None, mm).len() == 1
    });
}

fn assert_healthy_log(proxy: &mut Proxy) {
    proxy.assert_running();
    let log = proxy.log();
    for bad in ["panicked", "memory allocation"] {
        assert!(
            !log.contains(bad),
            "{bad:?} in the log:\n{}",
            file_tail(proxy.log_path(), 40)
        );
    }
}

#[test]
fn gzip_bombs_are_refused_quickly_in_bounded_memory() {
    let db = "bomb";
    let d = Influxd::start();
    d.create_db(db);
    let mut config = config_for_urls(&[vec![d.url()]]);
    config["max_body_size"] = json!(1 << 20);
    let mut proxy = Proxy::start(config);
    let addr = proxy.addr();
    let rss_before = proxy.rss_kib().expect("proxy RSS");

    // Under the limit on the wire (~1 MB), 950 MiB once gunzipped.
    let bomb = gzip_bomb(950);
    assert!(
        bomb.len() < 1 << 20,
        "the bomb itself must fit max_body_size: {}",
        bomb.len()
    );
    // A few MB on the wire (4 GiB gunzipped), with and without a length.
    let big_bomb = gzip_bomb(4096);
    assert!(big_bomb.len() > 3 << 20, "{}", big_bomb.len());
    let w = "POST /write?db=bomb HTTP/1.1\r\nHost: x\r\nContent-Encoding: gzip\r\n";
    let mut chunked = Vec::new();
    for c in big_bomb.chunks(64 << 10) {
        chunked.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
        chunked.extend_from_slice(c);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let cases = [
        (
            "1 MB gzip of 950 MiB",
            format!("{w}Content-Length: {}\r\n\r\n", bomb.len()),
            bomb.clone(),
        ),
        (
            "4 MB gzip of 4 GiB",
            format!("{w}Content-Length: {}\r\n\r\n", big_bomb.len()),
            big_bomb.clone(),
        ),
        (
            "4 MB gzip of 4 GiB, chunked",
            format!("{w}Transfer-Encoding: chunked\r\n\r\n"),
            chunked,
        ),
    ];
    for (what, head, body) in cases {
        for round in 0..3 {
            let (resp, took) = send_reading_concurrently(
                addr,
                head.clone(),
                body.clone(),
                Duration::from_secs(10),
            );
            let what = format!("{what} (round {round})");
            assert_413(resp.as_ref(), &what);
            assert!(
                took < Duration::from_secs(3),
                "{what}: answered after {took:?}"
            );
            let rss = proxy.rss_kib().expect("proxy RSS");
            eprintln!("{what}: 413 in {took:?}, RSS {rss} KiB (before {rss_before} KiB)");
            assert!(
                rss < rss_before + 64 * 1024,
                "{what}: RSS grew from {rss_before} KiB to {rss} KiB"
            );
            assert!(ping_ok(&proxy.url()), "{what}: /ping no longer answers");
        }
    }
    assert!(d.rows(db, None, "cpu").is_empty());
    assert_normal_write_works(&proxy, &d, db, "after_bomb");
    assert_healthy_log(&mut proxy);
}

#[test]
fn huge_content_length_is_refused_without_memory_or_blocking_others() {
    let db = "hugecl";
    let d = Influxd::start();
    d.create_db(db);
    let mut config = config_for_urls(&[vec![d.url()]]);
    config["max_body_size"] = json!(1 << 20);
    config["idle_timeout"] = json!(2);
    config["worker_threads"] = json!(2);
    let mut proxy = Proxy::start(config);
    let addr = proxy.addr();
    let rss_before = proxy.rss_kib().expect("proxy RSS");
    let head = format!(
        "POST /write?db={db} HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000000\r\n\r\ncpu,host=a v=1 1\n"
    );

    // A client that announces 10 GB, sends a line and stalls.
    let mut stalled = Vec::new();
    for i in 0..2 {
        let t = Instant::now();
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(head.as_bytes()).expect("send head");
        let got = read_response(&mut s, Duration::from_secs(5));
        let took = t.elapsed();
        assert_413(parse_raw(&got).as_ref(), &format!("stalled client {i}"));
        assert!(
            took < Duration::from_secs(2),
            "stalled client {i}: 413 after {took:?}"
        );
        stalled.push((s, Instant::now()));
        // Others are served while it stalls: at once while a worker is
        // free; once every worker holds a stalled client (the second one,
        // with 2 workers), within idle_timeout.
        let limit = if i == 0 {
            Duration::from_secs(1)
        } else {
            Duration::from_millis(3500)
        };
        let t = Instant::now();
        let ping = agent(Duration::from_secs(10))
            .get(&format!("{}/ping", proxy.url()))
            .call();
        assert!(
            matches!(&ping, Ok(r) if r.status().as_u16() == 204),
            "/ping while client {i} stalls: {ping:?}"
        );
        let (status, text) = proxy.write(
            db,
            None,
            &format!("during_stall,n={i} v=1 1700000000000000000\n"),
        );
        assert_eq!(status, 204, "write while client {i} stalls: {text:?}");
        let waited = t.elapsed();
        eprintln!(
            "stalled client {i}: 413 in {took:?}; ping + write from another client took {waited:?}"
        );
        assert!(
            waited < limit,
            "another client waited {waited:?} while {} stalled (2 workers, idle_timeout 2 s)",
            i + 1
        );
        let rss = proxy.rss_kib().expect("proxy RSS");
        assert!(
            rss < rss_before + 64 * 1024,
            "RSS grew from {rss_before} KiB to {rss} KiB"
        );
    }
    // The proxy lets go of the stalled connections (idle_timeout 2 s).
    for (i, (mut s, since)) in stalled.into_iter().enumerate() {
        s.set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        let mut buf = [0u8; 1024];
        let mut extra = Vec::new();
        let closed = loop {
            match s.read(&mut buf) {
                Ok(0) => break true,
                Ok(n) => extra.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
                Err(_) => break true,
            }
            if since.elapsed() > Duration::from_secs(8) {
                break false;
            }
        };
        let after = since.elapsed();
        assert!(
            closed,
            "stalled client {i}: connection still open {after:?} after its 413"
        );
        eprintln!(
            "stalled client {i}: closed by the proxy {after:?} after its 413 (then sent {:?})",
            String::from_utf8_lossy(&extra)
        );
    }

    // A client that announces 10 GB, sends a line and closes at once.
    for i in 0..4 {
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).expect("connect");
        s.write_all(head.as_bytes()).expect("send head");
        let _ = s.shutdown(Shutdown::Write);
        let got = read_response(&mut s, Duration::from_secs(5));
        if let Some(r) = parse_raw(&got) {
            assert_413(Some(&r), &format!("closing client {i}"));
        }
        drop(s);
    }
    assert!(ping_ok(&proxy.url()), "/ping after the closing clients");
    let rss = proxy.rss_kib().expect("proxy RSS");
    eprintln!("RSS before {rss_before} KiB, after {rss} KiB");
    assert!(
        rss < rss_before + 64 * 1024,
        "RSS grew from {rss_before} KiB to {rss} KiB"
    );
    assert_normal_write_works(&proxy, &d, db, "after_huge_cl");
    wait_until(DELIVERY, "the writes made during the stalls", || {
        d.rows(db, None, "during_stall").len() == 2
    });
    assert!(d.rows(db, None, "cpu").is_empty(), "a 413 body was stored");
    assert_healthy_log(&mut proxy);
}

/// tiny_http 0.12's `EqualReader::drop` drains an unread body with
/// `vec![0; remaining Content-Length]`, on every answer (413, 401, even
/// `/ping`'s 204). The proxy shuts the socket's read side first, maps huge
/// blocks lazily (`src/alloc.rs`) and catches the `capacity overflow` panic
/// of a length beyond `isize::MAX`; a length in between, which no block
/// could hold, is answered 413 without letting tiny_http drain it.
#[test]
fn absurd_content_length_neither_kills_the_proxy_nor_its_workers() {
    let mut failures = Vec::new();
    for (what, length, times, status) in [
        // > isize::MAX: `capacity overflow` panic in each worker it reaches,
        // caught: the ping is answered.
        ("u64::MAX, once per worker", "18446744073709551615", 2, 204),
        // Far more than the machine's memory, less than its address space.
        ("10 TB", "10000000000000", 2, 413),
        // Beyond what can be mapped: refused without tiny_http's drain.
        ("1 PB", "1000000000000000", 2, 413),
        ("isize::MAX", "9223372036854775807", 2, 413),
        // Mapped lazily: the ping is answered.
        ("10 GB", "10000000000", 2, 204),
    ] {
        let mut config = config_for_urls(&[vec![refused_url()]]);
        config["worker_threads"] = json!(2);
        let mut proxy = Proxy::start(config);
        let request =
            format!("POST /ping HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\n\r\nx");
        for i in 0..times {
            let got = raw_request(proxy.addr(), request.as_bytes(), Duration::from_secs(3));
            let answered = raw_status(&got);
            eprintln!("Content-Length {length}: answered {answered:?}");
            // A 413 names the length it refused.
            let named = status != 413 || String::from_utf8_lossy(&got).contains(length);
            if answered != Some(status) || !named {
                failures.push(format!(
                    "{what}, request {i}: want {status}, got {:?}",
                    String::from_utf8_lossy(&got)
                ));
            }
        }
        if let Some(status) = proxy.exit_status() {
            failures.push(format!(
                "{what}: the proxy exited with {status}:\n{}",
                file_tail(proxy.log_path(), 3)
            ));
        } else if !ping_ok(&proxy.url()) {
            failures.push(format!(
                "{what}: /ping no longer answers:\n{}",
                file_tail(proxy.log_path(), 3)
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

// ---------------------------------------------------------------------------
// 7. Backend names cannot lead the spool out of data_dir.

/// Every path under `root` (files and folders), relative to it.
fn walk(root: &Path) -> BTreeSet<PathBuf> {
    let mut out = BTreeSet::new();
    let mut todo = vec![root.to_path_buf()];
    while let Some(dir) = todo.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let p = entry.path();
            out.insert(p.strip_prefix(root).unwrap().to_path_buf());
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                todo.push(p);
            }
        }
    }
    out
}

#[test]
fn backend_names_cannot_lead_the_spool_out_of_data_dir() {
    let root = TempDir::new("names");
    // An absolute name points into the test's own folder, so that a
    // regression leaves nothing behind on the machine.
    let absolute = root.path().join("abs").join("path");
    let absolute = absolute.to_str().expect("UTF-8 temp path");
    let names = [
        "../../etc/x",
        "..",
        absolute,
        "a/b",
        ".",
        "x\\..\\..\\y",
        "%2E%2E",
        "é ü",
    ];
    let data_dir = root.path().join("a").join("b").join("data");
    // A Go proxy queue where a raw name would look for it: never read or
    // renamed (only plain names are imported).
    let decoy_dir = root.path().join("a").join("etc");
    std::fs::create_dir_all(&decoy_dir).unwrap();
    std::fs::write(decoy_dir.join("x.dat"), b"not a queue").unwrap();
    let mut config = json!({
        "circles": names.iter().enumerate().map(|(i, n)| json!({
            "name": format!("circle-{i}"),
            "backends": [{"name": n, "url": refused_url()}],
        })).collect::<Vec<_>>(),
        "flush_time": 1,
        "check_interval": 1,
        "data_dir": data_dir.display().to_string(),
    });
    let tlog = root.path().join("a").join("b").join("tlog");
    config["tlog_dir"] = json!(tlog.display().to_string());
    let mut proxy = Proxy::start(config);
    // Every backend is down: the writes are acknowledged from the spools.
    let mut body = String::new();
    for i in 0..50 {
        body.push_str(&format!("m{i},host=h v={i} 170000000000000000{}\n", i % 10));
    }
    for round in 0..3 {
        let (status, text) = proxy.write("names", None, &body);
        assert_eq!(
            status, 204,
            "write {round} with every backend down: {text:?}"
        );
    }
    let r = call(
        "POST",
        &format!("{}/query", proxy.url()),
        &[("q", "CREATE DATABASE names")],
        &[],
        b"",
    );
    assert_eq!(
        r.status, 200,
        "CREATE DATABASE queued for the down backends: {:?}",
        r.body
    );
    for n in names {
        let b = proxy.backend_health(n);
        assert!(
            b["spool"]["records_waiting"].as_u64().unwrap_or(0) >= 3,
            "backend {n:?}: nothing waiting in its spool: {b}"
        );
    }
    // Restart: the spools are found again under the same names.
    assert!(
        proxy.terminate(Duration::from_secs(10)).is_some(),
        "the proxy did not stop on SIGTERM"
    );
    proxy.restart();

    let expected_dirs: BTreeSet<String> = names.iter().map(|n| spool_dir_name(n)).collect();
    // Folders only: data_dir also holds the proxy's `LOCK` file.
    let listed: BTreeSet<String> = std::fs::read_dir(&data_dir)
        .expect("data_dir")
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(listed, expected_dirs, "the folders in data_dir");
    for n in names {
        let segs = std::fs::read_dir(data_dir.join(spool_dir_name(n)))
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".seg"))
            .count();
        assert!(segs >= 1, "backend {n:?}: no segment in its spool folder");
        let b = proxy.backend_health(n);
        assert!(
            b["spool"]["records_waiting"].as_u64().unwrap_or(0) >= 3,
            "backend {n:?} after the restart: {b}"
        );
    }
    // Outside data_dir: only what the test made (and tlog_dir, if used).
    let outside: Vec<PathBuf> = walk(root.path())
        .into_iter()
        .filter(|p| {
            let full = root.path().join(p);
            !full.starts_with(&data_dir) && !full.starts_with(&tlog)
        })
        .collect();
    let allowed: BTreeSet<PathBuf> = ["a", "a/b", "a/b/data", "a/etc", "a/etc/x.dat", "a/b/tlog"]
        .iter()
        .map(PathBuf::from)
        .collect();
    let stray: Vec<&PathBuf> = outside.iter().filter(|p| !allowed.contains(*p)).collect();
    assert!(stray.is_empty(), "created outside data_dir: {stray:?}");
    assert_eq!(
        std::fs::read(decoy_dir.join("x.dat")).ok().as_deref(),
        Some(&b"not a queue"[..]),
        "the decoy Go queue outside data_dir was touched"
    );
    assert!(!root.path().join("abs").exists(), "{absolute} was created");
    assert!(!root.path().join("a").join("etc").join("x").exists());
    assert_healthy_log(&mut proxy);
}

#[test]
fn a_backend_name_too_long_for_a_folder_is_refused_at_start() {
    let dir = TempDir::new("longname");
    // 30 CJK characters: 90 bytes, 270 once each byte is written %XX, over
    // NAME_MAX (255). The Go proxy takes it (its queue file is 94 bytes);
    // this proxy refuses to start, naming the backend. No path characters,
    // so even a regression in the encoding cannot write outside the test.
    let name = "机房".repeat(15);
    let config = json!({
        "circles": [{"name": "c", "backends": [{"name": name, "url": refused_url()}]}],
        "listen_addr": format!("127.0.0.1:{}", free_port()),
        "data_dir": dir.path().join("data").display().to_string(),
    });
    let path = dir.path().join("proxy.json");
    std::fs::write(&path, serde_json::to_vec(&config).unwrap()).unwrap();
    let (code, out) = run_proxy_binary(
        &["-config", path.to_str().unwrap()],
        dir.path(),
        Duration::from_secs(10),
    );
    assert_eq!(code, Some(1), "exit code; output:\n{out}");
    assert!(
        out.contains("cannot open the spool of backend")
            && out.contains(&name)
            && out.contains("too long"),
        "the error should name the backend and the cause:\n{out}"
    );
    // Nothing was created outside data_dir.
    let outside: Vec<PathBuf> = walk(dir.path())
        .into_iter()
        .filter(|p| {
            !p.starts_with("data")
                && !p.to_string_lossy().starts_with("run-")
                && p != Path::new("proxy.json")
        })
        .collect();
    assert!(outside.is_empty(), "created outside data_dir: {outside:?}");
}
