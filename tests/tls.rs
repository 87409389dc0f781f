//! HTTPS end to end: the TLS front (`https_enabled`, `tls.*`,
//! `max_connections`, `idle_timeout`) in front of real influxd, driven by
//! ureq, rustls, curl, `openssl s_client`, the Python `influxdb` client and
//! the `influx` shell; and `https://` backends (real influxd serving HTTPS)
//! verified with `backend_ca_file`, Mozilla's roots or not at all
//! (`backend_insecure_skip_verify`).
//!
//! Certificates are made by each test with the `openssl` CLI in a temp dir.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::query::{require_python_influxdb, run_python_json, run_tool};
use common::*;
use serde_json::{json, Value};

const OPENSSL: &str = "openssl";
const INFLUX: &str = "/usr/bin/influx";
const DELIVERY: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------
// Certificates.

/// PEM files made with the `openssl` CLI, in a temp dir removed on drop.
struct Certs {
    dir: TempDir,
}

impl Certs {
    fn new() -> Certs {
        Certs {
            dir: TempDir::new("certs"),
        }
    }

    fn path(&self, file: &str) -> PathBuf {
        self.dir.path().join(file)
    }

    fn openssl(&self, args: &[&str]) {
        let (code, out, err) = run_tool(OPENSSL, args, Duration::from_secs(60));
        assert_eq!(
            code,
            Some(0),
            "openssl {args:?} failed (is Debian's openssl installed?):\n{out}{err}"
        );
    }

    /// `<name>.pem` and `<name>.key`: a self-signed RSA certificate with
    /// this subject and these `-addext` extensions.
    fn req_x509(&self, name: &str, subject: &str, extensions: &[&str]) -> (PathBuf, PathBuf) {
        let (cert, key) = (
            self.path(&format!("{name}.pem")),
            self.path(&format!("{name}.key")),
        );
        let mut args = vec![
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            key.to_str().unwrap(),
            "-out",
            cert.to_str().unwrap(),
            "-days",
            "2",
            "-subj",
            subject,
        ];
        for e in extensions {
            args.extend(["-addext", e]);
        }
        self.openssl(&args);
        (cert, key)
    }

    /// A self-signed certificate for 127.0.0.1 (CN and subjectAltName).
    /// `CA:FALSE`: webpki (rustls) refuses a certificate marked as a CA as
    /// a server's own (`CaUsedAsEndEntity`), and OpenSSL 3 marks a
    /// `req -x509` one so by default.
    fn self_signed(&self, name: &str) -> (PathBuf, PathBuf) {
        self.req_x509(
            name,
            "/CN=127.0.0.1",
            &[
                "subjectAltName=IP:127.0.0.1",
                "basicConstraints=critical,CA:FALSE",
            ],
        )
    }

    /// A CA certificate (CA:TRUE).
    fn ca(&self, name: &str) -> (PathBuf, PathBuf) {
        self.req_x509(
            name,
            &format!("/CN=influx-proxy test CA {name}"),
            &[
                "basicConstraints=critical,CA:TRUE",
                "keyUsage=critical,keyCertSign,cRLSign",
            ],
        )
    }

    /// `<name>.pem` and `<name>.key`: a server certificate for 127.0.0.1
    /// signed by the CA `ca`.
    fn leaf(&self, name: &str, ca: &(PathBuf, PathBuf)) -> (PathBuf, PathBuf) {
        let (cert, key) = (
            self.path(&format!("{name}.pem")),
            self.path(&format!("{name}.key")),
        );
        let csr = self.path(&format!("{name}.csr"));
        let ext = self.path(&format!("{name}.ext"));
        std::fs::write(
            &ext,
            "subjectAltName=IP:127.0.0.1\nbasicConstraints=critical,CA:FALSE\n\
             keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
        )
        .expect("write the extensions file");
        self.openssl(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            key.to_str().unwrap(),
            "-out",
            csr.to_str().unwrap(),
            "-subj",
            "/CN=127.0.0.1",
        ]);
        self.openssl(&[
            "x509",
            "-req",
            "-in",
            csr.to_str().unwrap(),
            "-CA",
            ca.0.to_str().unwrap(),
            "-CAkey",
            ca.1.to_str().unwrap(),
            "-CAcreateserial",
            "-out",
            cert.to_str().unwrap(),
            "-days",
            "2",
            "-extfile",
            ext.to_str().unwrap(),
        ]);
        (cert, key)
    }
}

fn s(p: &Path) -> String {
    p.display().to_string()
}

// ---------------------------------------------------------------------------
// HTTPS clients.

/// A ureq agent that trusts only the certificates in `ca` (PEM), reports
/// HTTP errors as responses and keeps connections alive.
fn https_agent(ca: &Path, timeout: Duration) -> ureq::Agent {
    https_agent_with(ca, timeout, true)
}

/// Same, but a new connection (and handshake) for every request.
fn https_agent_no_keepalive(ca: &Path, timeout: Duration) -> ureq::Agent {
    https_agent_with(ca, timeout, false)
}

fn https_agent_with(ca: &Path, timeout: Duration, keep_alive: bool) -> ureq::Agent {
    use ureq::tls::{PemItem, RootCerts, TlsConfig};
    let pem = std::fs::read(ca).unwrap_or_else(|e| panic!("read {}: {e}", ca.display()));
    let certs: Vec<ureq::tls::Certificate<'static>> = ureq::tls::parse_pem(&pem)
        .filter_map(|item| match item {
            Ok(PemItem::Certificate(c)) => Some(c),
            _ => None,
        })
        .collect();
    assert!(!certs.is_empty(), "no certificate in {}", ca.display());
    let mut config = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .proxy(None)
        .timeout_global(Some(timeout))
        .tls_config(
            TlsConfig::builder()
                .root_certs(RootCerts::new_with_certs(&certs))
                .build(),
        );
    if !keep_alive {
        config = config.max_idle_connections(0);
    }
    config.build().into()
}

/// Same, panicking on a transport failure.
fn must(
    agent: &ureq::Agent,
    method: &str,
    url: &str,
    params: &[(&str, &str)],
    body: &[u8],
) -> Resp {
    http_send(agent, method, url, params, &[], body)
        .unwrap_or_else(|e| panic!("{method} {url} {params:?}: {e}"))
}

fn https_url(port: u16) -> String {
    format!("https://127.0.0.1:{port}")
}

/// Starts the proxy with `config` (https keys already in it); ready once
/// `/ping` answers 204 over HTTPS verified against `ca`.
fn start_https_proxy(config: Value, ca: &Path) -> Proxy {
    let agent = https_agent_no_keepalive(ca, Duration::from_secs(2));
    Proxy::start_until(config, "-config", &move |url: &str| {
        let url = url.replacen("http://", "https://", 1);
        matches!(
            http_send(&agent, "GET", &format!("{url}/ping"), &[], &[], b""),
            Ok(r) if r.status == 204
        )
    })
}

/// `config` with HTTPS on, serving `cert`/`key`.
fn with_https(mut config: Value, cert: &Path, key: &Path) -> Value {
    config["https_enabled"] = json!(true);
    config["https_cert"] = json!(s(cert));
    config["https_key"] = json!(s(key));
    config
}

/// A proxy config with one circle of one backend on which nothing listens
/// (for tests of the front alone: `/ping` needs no backend).
fn lone_config() -> Value {
    config_for_urls(&[vec![refused_url()]])
}

/// The thread count of process `pid`.
fn threads(pid: u32) -> u64 {
    proc_threads(pid).expect("Threads: in /proc/<pid>/status")
}

/// Waits until no TLS connection thread is left in process `pid` (each
/// ends after its client's connection, and only then frees its place under
/// `max_connections`).
fn wait_tls_connections_gone(pid: u32) {
    wait_until(
        Duration::from_secs(10),
        "the TLS connection threads of earlier clients to end",
        || threads_named(pid, "tls-conn") == 0,
    );
}

/// A rustls client over TCP, trusting only `ca`.
fn tls_client(
    addr: SocketAddr,
    ca: &Path,
) -> rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, ServerName};
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca).expect("read CA") {
        roots.add(c.expect("PEM certificate")).expect("add root");
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    let name = ServerName::try_from("127.0.0.1").expect("server name");
    let conn = rustls::ClientConnection::new(Arc::new(config), name.to_owned()).expect("client");
    let tcp = TcpStream::connect(addr).expect("connect");
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    tcp.set_write_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut stream = rustls::StreamOwned::new(conn, tcp);
    while stream.conn.is_handshaking() {
        stream
            .conn
            .complete_io(&mut stream.sock)
            .expect("TLS handshake with the proxy");
    }
    stream
}

// ---------------------------------------------------------------------------
// openssl s_client.

/// What `openssl s_client` saw.
#[derive(Debug)]
struct Handshake {
    /// "TLSv1.2", "TLSv1.3", or "(NONE)" when it failed.
    protocol: String,
    /// OpenSSL's name of the suite, "(NONE)" when it failed.
    cipher: String,
    /// Bytes the server sent during the handshake.
    read: u64,
    /// The server answered with an alert.
    alert: bool,
    output: String,
}

impl Handshake {
    fn ok(&self) -> bool {
        self.protocol.starts_with("TLSv") && self.cipher != "(NONE)"
    }
}

/// `openssl s_client -connect 127.0.0.1:<port> -CAfile <ca> ARGS </dev/null`.
fn s_client(port: u16, ca: &Path, args: &[&str]) -> Handshake {
    let addr = format!("127.0.0.1:{port}");
    let ca = s(ca);
    let mut all = vec!["s_client", "-connect", &addr, "-CAfile", &ca];
    all.extend_from_slice(args);
    let (code, out, err) = run_tool(OPENSSL, &all, Duration::from_secs(20));
    let output = format!("exit {code:?}\n{out}{err}");
    assert!(code.is_some(), "openssl s_client {args:?} hung:\n{output}");
    // "New, TLSv1.2, Cipher is ECDHE-RSA-AES128-GCM-SHA256" or
    // "New, (NONE), Cipher is (NONE)".
    let (protocol, cipher) = output
        .lines()
        .find_map(|l| l.strip_prefix("New, "))
        .and_then(|l| l.split_once(", Cipher is "))
        .map(|(p, c)| (p.trim().to_string(), c.trim().to_string()))
        .unwrap_or_else(|| ("(NONE)".into(), "(NONE)".into()));
    let read = output
        .lines()
        .find_map(|l| l.trim().strip_prefix("SSL handshake has read "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    let alert = output.contains("SSL alert number");
    Handshake {
        protocol,
        cipher,
        read,
        alert,
        output,
    }
}

/// The handshake worked with `protocol`, and the certificate checked out
/// against the CA file.
fn assert_negotiated(h: &Handshake, protocol: &str, what: &str) {
    assert!(
        h.ok() && h.protocol == protocol,
        "{what}: expected a {protocol} handshake, got {} / {}:\n{}",
        h.protocol,
        h.cipher,
        h.output
    );
    assert!(
        h.output.contains("Verification: OK") || h.output.contains("Verify return code: 0 (ok)"),
        "{what}: the proxy's certificate did not verify:\n{}",
        h.output
    );
}

/// The handshake failed because the *proxy* answered with an alert (not
/// because the local OpenSSL refused to try).
fn assert_refused_by_proxy(h: &Handshake, what: &str) {
    assert!(
        !h.ok(),
        "{what}: the proxy accepted it ({} / {}):\n{}",
        h.protocol,
        h.cipher,
        h.output
    );
    assert!(
        h.alert && h.read > 0,
        "{what}: expected the proxy to answer with an alert (read {} bytes):\n{}",
        h.read,
        h.output
    );
    for local in ["no protocols available", "no ciphers available"] {
        assert!(
            !h.output.contains(local),
            "{what}: OpenSSL refused locally ({local}), the proxy was not tested:\n{}",
            h.output
        );
    }
}

// ---------------------------------------------------------------------------
// 1. The HTTPS listener end to end.

#[test]
fn https_front_serves_ping_write_query_and_health_to_a_verifying_client() {
    let certs = Certs::new();
    let (cert, key) = certs.self_signed("proxy");
    let other_ca = certs.ca("other");
    let influxds = Influxd::start_many(2);
    for d in &influxds {
        d.create_db("tlsdb");
    }
    let config = with_https(
        config_for_urls(&[vec![influxds[0].url(), influxds[1].url()]]),
        &cert,
        &key,
    );
    let mut proxy = start_https_proxy(config, &cert);
    let base = https_url(proxy.port());
    let agent = https_agent(&cert, Duration::from_secs(20));
    let t = Instant::now();

    // /ping
    let r = must(&agent, "GET", &format!("{base}/ping"), &[], b"");
    assert_eq!(r.status, 204, "{r:?}");
    assert_eq!(
        r.header("x-influxdb-build"),
        Some("InfluxDB Proxy"),
        "{r:?}"
    );

    // Writes: small, gzipped and large (many TLS records each way), spread
    // over several measurements so both backends get points.
    let base_ts = 1_700_000_000_000_000_000i64;
    let mut small = String::new();
    for m in 0..8 {
        small.push_str(&format!("m{m},host=h{m} v={m}i {}\n", base_ts + m));
    }
    let r = must(
        &agent,
        "POST",
        &format!("{base}/write"),
        &[("db", "tlsdb")],
        small.as_bytes(),
    );
    assert_eq!(r.status, 204, "small write: {r:?}");
    let r = http_send(
        &agent,
        "POST",
        &format!("{base}/write"),
        &[("db", "tlsdb")],
        &[("Content-Encoding", "gzip")],
        &gzip(format!("gz,host=g v=1.5 {base_ts}\n").as_bytes()),
    )
    .expect("gzip write");
    assert_eq!(r.status, 204, "gzip write: {r:?}");
    const BIG: usize = 20_000;
    let mut big = String::with_capacity(BIG * 60);
    for i in 0..BIG {
        big.push_str(&format!(
            "big,host=h{} value={i}i,pad=\"{}\" {}\n",
            i % 7,
            "x".repeat(20),
            base_ts + i as i64
        ));
    }
    assert!(
        big.len() > 1_000_000,
        "the large body spans many TLS records"
    );
    let r = must(
        &agent,
        "POST",
        &format!("{base}/write"),
        &[("db", "tlsdb")],
        big.as_bytes(),
    );
    assert_eq!(r.status, 204, "large write: {r:?}");

    // The points reach their owners in influxd.
    for m in 0..8 {
        let mm = format!("m{m}");
        let d = &influxds[owner("tlsdb", &mm, 2)];
        wait_for_eq(DELIVERY, &format!("{mm} at its owner"), &1, || {
            d.rows("tlsdb", None, &mm).len()
        });
    }
    let big_owner = &influxds[owner("tlsdb", "big", 2)];
    wait_for_eq(DELIVERY, "every big point at its owner", &BIG, || {
        big_owner.rows("tlsdb", None, "big").len()
    });
    let gz = &influxds[owner("tlsdb", "gz", 2)];
    wait_for_eq(DELIVERY, "the gzip point at its owner", &1, || {
        gz.rows("tlsdb", None, "gz").len()
    });

    // Queries through HTTPS: a small answer and a large one.
    let r = must(
        &agent,
        "GET",
        &format!("{base}/query"),
        &[("db", "tlsdb"), ("q", "SELECT v FROM m3"), ("epoch", "ns")],
        b"",
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(
        r.json()["results"][0]["series"][0]["values"],
        json!([[base_ts + 3, 3]]),
        "{}",
        r.body
    );
    let r = must(
        &agent,
        "GET",
        &format!("{base}/query"),
        &[
            ("db", "tlsdb"),
            ("q", "SELECT value, pad FROM big"),
            ("epoch", "ns"),
        ],
        b"",
    );
    assert_eq!(r.status, 200, "{}", &r.body[..r.body.len().min(500)]);
    let values = r.json()["results"][0]["series"][0]["values"].clone();
    let values = values.as_array().expect("values");
    assert_eq!(values.len(), BIG, "every row of the large answer");
    assert_eq!(
        values[BIG - 1],
        json!([base_ts + BIG as i64 - 1, BIG - 1, "x".repeat(20)])
    );
    let r = must(
        &agent,
        "POST",
        &format!("{base}/query"),
        &[("q", "SHOW DATABASES")],
        b"",
    );
    assert!(r.status == 200 && r.body.contains("\"tlsdb\""), "{r:?}");

    // /health
    let r = must(&agent, "GET", &format!("{base}/health"), &[], b"");
    assert_eq!(r.status, 200, "{r:?}");
    let h = r.json();
    for c in h["circles"].as_array().expect("circles") {
        for b in c["backends"].as_array().expect("backends") {
            assert_eq!(b["active"], json!(true), "{h}");
        }
    }

    // Keep-alive: many requests, one connection at a time, all answered.
    for i in 0..20 {
        let r = must(&agent, "GET", &format!("{base}/ping"), &[], b"");
        assert_eq!(r.status, 204, "ping {i} on a kept-alive connection");
    }

    // Plain HTTP to the HTTPS port is never served.
    let got = raw_request(
        proxy.addr(),
        b"GET /ping HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
        Duration::from_secs(3),
    );
    assert!(
        raw_status(&got).is_none() && !got.starts_with(b"HTTP"),
        "plain HTTP to the https port was answered: {:?}",
        String::from_utf8_lossy(&got)
    );
    let plain = common::agent(Duration::from_secs(3))
        .get(&format!("{}/ping", proxy.url()))
        .call();
    assert!(
        plain.is_err(),
        "plain HTTP to the https port: {:?}",
        plain.map(|r| r.status())
    );
    let plain_write = common::agent(Duration::from_secs(3))
        .post(&format!("{}/write?db=tlsdb", proxy.url()))
        .send(&b"plain,host=p v=1 1700000000000000000\n"[..]);
    assert!(plain_write.is_err(), "plain HTTP write was served");

    // A client that trusts another CA refuses the proxy's certificate.
    let other = https_agent_no_keepalive(&other_ca.0, Duration::from_secs(5));
    let r = http_send(&other, "GET", &format!("{base}/ping"), &[], &[], b"");
    assert!(
        r.as_ref()
            .is_err_and(|e| e.to_ascii_lowercase().contains("certificate")
                || e.to_ascii_lowercase().contains("issuer")),
        "a client trusting another CA: {r:?}"
    );

    // The proxy is still fine, and the plain write never landed.
    let r = must(&agent, "GET", &format!("{base}/ping"), &[], b"");
    assert_eq!(r.status, 204);
    let plain_owner = &influxds[owner("tlsdb", "plain", 2)];
    holds_for(
        Duration::from_millis(1500),
        "the plain write never lands",
        || plain_owner.rows("tlsdb", None, "plain").is_empty(),
    );
    proxy.assert_running();
    eprintln!("https end to end took {:?}", t.elapsed());
}

const PY_TLS_SCRIPT: &str = r#"
import requests
from influxdb import InfluxDBClient

port, ca = int(sys.argv[1]), sys.argv[2]
out = {}
c = InfluxDBClient(host="127.0.0.1", port=port, ssl=True, verify_ssl=ca,
                   database="tlsdb", timeout=10, retries=1)
out["version"] = c.ping()
out["write"] = c.write_points([{"measurement": "py", "tags": {"host": "p"},
                                "time": 1700000000000000000, "fields": {"v": 2.5}}])
out["points"] = poll(lambda: list(c.query("SELECT * FROM py").get_points()), bool)
out["databases"] = sorted(d["name"] for d in c.get_list_database())
try:
    InfluxDBClient(host="127.0.0.1", port=port, ssl=True, verify_ssl=True,
                   timeout=5, retries=1).ping()
    out["default_ca"] = "no error"
except requests.exceptions.SSLError as e:
    out["default_ca"] = "SSLError"
print(json.dumps(out, sort_keys=True))
"#;

#[test]
fn https_front_with_curl_python_and_the_influx_shell() {
    require_python_influxdb();
    assert!(
        Path::new(INFLUX).exists(),
        "{INFLUX} is missing: install Debian's influxdb-client (scripts/test.sh installs it)"
    );
    let certs = Certs::new();
    let (cert, key) = certs.self_signed("proxy");
    let influxds = Influxd::start_many(2);
    for d in &influxds {
        d.create_db("tlsdb");
    }
    let config = with_https(
        config_for_urls(&[vec![influxds[0].url(), influxds[1].url()]]),
        &cert,
        &key,
    );
    let mut proxy = start_https_proxy(config, &cert);
    let base = https_url(proxy.port());
    let port = proxy.port().to_string();
    let ca = s(&cert);
    let t = Instant::now();

    // curl --cacert
    let curl = |args: &[&str]| {
        let (code, out, err) = run_tool("curl", args, Duration::from_secs(20));
        (code, out, err)
    };
    let ping = format!("{base}/ping");
    let (code, out, err) = curl(&[
        "-sS",
        "--cacert",
        &ca,
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        &ping,
    ]);
    assert_eq!((code, out.as_str()), (Some(0), "204"), "curl /ping: {err}");
    let write = format!("{base}/write?db=tlsdb");
    let (code, out, err) = curl(&[
        "-sS",
        "--cacert",
        &ca,
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "-XPOST",
        &write,
        "--data-binary",
        "curlm,host=c v=3 1700000000000000000",
    ]);
    assert_eq!((code, out.as_str()), (Some(0), "204"), "curl /write: {err}");
    let query = format!("{base}/query");
    let selected = retry_for(DELIVERY, || {
        let (code, out, err) = curl(&[
            "-sS",
            "--cacert",
            &ca,
            "-G",
            &query,
            "--data-urlencode",
            "db=tlsdb",
            "--data-urlencode",
            "q=SELECT v FROM curlm",
            "--data-urlencode",
            "epoch=ns",
        ]);
        assert_eq!(code, Some(0), "curl /query: {out}{err}");
        if out.contains("[1700000000000000000,3]") {
            Ok(())
        } else {
            Err(out)
        }
    });
    assert!(selected.is_ok(), "curl SELECT: {selected:?}");
    // curl without the CA refuses the certificate (exit 60), and plain
    // HTTP to the port gets no HTTP answer.
    let (code, _, err) = curl(&["-sS", "-o", "/dev/null", &ping]);
    assert_eq!(code, Some(60), "curl without --cacert: {err}");
    let (code, out, err) = curl(&[
        "-sS",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        &format!("{}/ping", proxy.url()),
    ]);
    assert!(
        code != Some(0) && out != "204",
        "curl plain HTTP to the https port: exit {code:?} {out} {err}"
    );

    // The Python influxdb client with verify_ssl=<the certificate>.
    let got = run_python_json(PY_TLS_SCRIPT, &[&port, &ca], Duration::from_secs(90));
    assert_eq!(got["version"], json!(env!("CARGO_PKG_VERSION")), "{got}");
    assert_eq!(got["write"], json!(true), "{got}");
    assert_eq!(
        got["points"],
        json!([{"time": "2023-11-14T22:13:20Z", "host": "p", "v": 2.5}]),
        "{got}"
    );
    assert_eq!(got["databases"], json!(["tlsdb"]), "{got}");
    assert_eq!(got["default_ca"], json!("SSLError"), "{got}");
    let py_owner = &influxds[owner("tlsdb", "py", 2)];
    assert_eq!(py_owner.rows("tlsdb", None, "py").len(), 1);

    // The influx shell over TLS.
    let influx = |args: &[&str]| common::query::influx(proxy.port(), args);
    let (code, out) = influx(&["-ssl", "-unsafeSsl", "-execute", "SHOW DATABASES"]);
    assert_eq!(code, Some(0), "influx -ssl SHOW DATABASES: {out}");
    assert!(out.lines().any(|l| l.trim() == "tlsdb"), "{out}");
    let (code, out) = influx(&[
        "-ssl",
        "-unsafeSsl",
        "-database",
        "tlsdb",
        "-execute",
        "INSERT shellm,host=s v=4 1700000000000000000",
    ]);
    assert!(
        code == Some(0) && !out.contains("ERR"),
        "influx INSERT: {out}"
    );
    let shell_owner = &influxds[owner("tlsdb", "shellm", 2)];
    wait_for_eq(DELIVERY, "the shell's point at its owner", &1, || {
        shell_owner.rows("tlsdb", None, "shellm").len()
    });
    let (code, out) = influx(&[
        "-ssl",
        "-unsafeSsl",
        "-database",
        "tlsdb",
        "-format",
        "csv",
        "-execute",
        "SELECT host, v FROM shellm",
    ]);
    assert_eq!(code, Some(0), "influx SELECT: {out}");
    assert!(out.lines().any(|l| l.ends_with(",s,4")), "{out}");
    // Without -unsafeSsl the shell checks the certificate and refuses;
    // without -ssl it speaks plain HTTP and gets nothing.
    let (code, out) = influx(&["-ssl", "-execute", "SHOW DATABASES"]);
    assert!(
        code != Some(0) && out.contains("certificate"),
        "influx -ssl with an unknown CA: {out}"
    );
    let (code, out) = influx(&["-execute", "SHOW DATABASES"]);
    assert!(
        code != Some(0) && !out.contains("tlsdb"),
        "influx over plain HTTP: {out}"
    );
    proxy.assert_running();
    eprintln!(
        "curl, Python and the influx shell over https took {:?}",
        t.elapsed()
    );
}

// ---------------------------------------------------------------------------
// 2. and 3. Versions and cipher suites.

#[test]
fn tls_versions_follow_min_and_max_version() {
    let certs = Certs::new();
    let (cert, key) = certs.self_signed("proxy");
    // OpenSSL's default security level forbids TLS 1.0/1.1 locally: level 0
    // makes it offer them, so the refusal is the proxy's.
    let old = ["-cipher", "DEFAULT@SECLEVEL=0"];
    let t = Instant::now();

    // Default: TLS 1.2 and 1.3.
    let proxy = start_https_proxy(with_https(lone_config(), &cert, &key), &cert);
    assert_negotiated(
        &s_client(proxy.port(), &cert, &["-tls1_2"]),
        "TLSv1.2",
        "default, -tls1_2",
    );
    assert_negotiated(
        &s_client(proxy.port(), &cert, &["-tls1_3"]),
        "TLSv1.3",
        "default, -tls1_3",
    );
    assert_negotiated(
        &s_client(proxy.port(), &cert, &[]),
        "TLSv1.3",
        "default, any version",
    );
    drop(proxy);

    let mut config = with_https(lone_config(), &cert, &key);
    config["tls"] = json!({"min_version": "tls1.2"});
    let proxy = start_https_proxy(config, &cert);
    let port = proxy.port();
    assert_refused_by_proxy(
        &s_client(port, &cert, &["-tls1", old[0], old[1]]),
        "min tls1.2, -tls1",
    );
    assert_refused_by_proxy(
        &s_client(port, &cert, &["-tls1_1", old[0], old[1]]),
        "min tls1.2, -tls1_1",
    );
    assert_negotiated(
        &s_client(port, &cert, &["-tls1_2"]),
        "TLSv1.2",
        "min tls1.2, -tls1_2",
    );
    assert_negotiated(
        &s_client(port, &cert, &["-tls1_3"]),
        "TLSv1.3",
        "min tls1.2, -tls1_3",
    );
    drop(proxy);

    // A Go config asking for TLS 1.0 still gets 1.2 at least (logged).
    let mut config = with_https(lone_config(), &cert, &key);
    config["tls"] = json!({"min_version": "tls1.0"});
    let proxy = start_https_proxy(config, &cert);
    assert_refused_by_proxy(
        &s_client(proxy.port(), &cert, &["-tls1", old[0], old[1]]),
        "min tls1.0, -tls1",
    );
    assert_negotiated(
        &s_client(proxy.port(), &cert, &["-tls1_2"]),
        "TLSv1.2",
        "min tls1.0, -tls1_2",
    );
    assert!(
        proxy.log().contains("TLS below 1.2 is never offered"),
        "{}",
        proxy.log()
    );
    drop(proxy);

    let mut config = with_https(lone_config(), &cert, &key);
    config["tls"] = json!({"max_version": "tls1.2"});
    let proxy = start_https_proxy(config, &cert);
    let port = proxy.port();
    assert_refused_by_proxy(&s_client(port, &cert, &["-tls1_3"]), "max tls1.2, -tls1_3");
    assert_negotiated(
        &s_client(port, &cert, &["-tls1_2"]),
        "TLSv1.2",
        "max tls1.2, -tls1_2",
    );
    assert_negotiated(
        &s_client(port, &cert, &[]),
        "TLSv1.2",
        "max tls1.2, any version",
    );
    drop(proxy);

    let mut config = with_https(lone_config(), &cert, &key);
    config["tls"] = json!({"min_version": "tls1.3"});
    let proxy = start_https_proxy(config, &cert);
    let port = proxy.port();
    assert_refused_by_proxy(&s_client(port, &cert, &["-tls1_2"]), "min tls1.3, -tls1_2");
    assert_refused_by_proxy(
        &s_client(port, &cert, &["-tls1_1", old[0], old[1]]),
        "min tls1.3, -tls1_1",
    );
    assert_negotiated(
        &s_client(port, &cert, &["-tls1_3"]),
        "TLSv1.3",
        "min tls1.3, -tls1_3",
    );
    drop(proxy);

    // No version left: refused at start, naming the keys.
    let dir = TempDir::new("tlsver");
    let mut config = with_https(lone_config(), &cert, &key);
    config["tls"] = json!({"min_version": "tls1.3", "max_version": "tls1.2"});
    let (code, out) = run_config(&dir, config);
    assert!(
        code.is_some_and(|c| c != 0)
            && out.contains("tls.min_version")
            && out.contains("tls.max_version"),
        "min 1.3 and max 1.2: exit {code:?}\n{out}"
    );
    eprintln!("version checks took {:?}", t.elapsed());
}

/// Runs the proxy binary on `config` (a free loopback listen_addr and a
/// data_dir in `dir` added) and waits at most 15 s for it to exit.
fn run_config(dir: &TempDir, mut config: Value) -> (Option<i32>, String) {
    config["listen_addr"] = json!(format!("127.0.0.1:{}", free_port()));
    config["data_dir"] = json!(s(&dir.path().join("spool")));
    let path = dir.path().join(format!("proxy-{}.json", now_ns()));
    std::fs::write(&path, serde_json::to_vec_pretty(&config).unwrap()).expect("write config");
    run_proxy_binary(
        &["-config", path.to_str().unwrap()],
        dir.path(),
        Duration::from_secs(15),
    )
}

#[test]
fn tls_ciphers_choose_the_tls12_suites_with_go_names() {
    let certs = Certs::new();
    let (cert, key) = certs.self_signed("proxy");
    let t = Instant::now();

    // Control: without tls.ciphers, a client offering only AES-256 gets it.
    let mut config = with_https(lone_config(), &cert, &key);
    config["tls"] = json!({"max_version": "tls1.2"});
    let proxy = start_https_proxy(config, &cert);
    let h = s_client(
        proxy.port(),
        &cert,
        &["-tls1_2", "-cipher", "ECDHE-RSA-AES256-GCM-SHA384"],
    );
    assert_negotiated(&h, "TLSv1.2", "no tls.ciphers, AES-256 only");
    assert_eq!(h.cipher, "ECDHE-RSA-AES256-GCM-SHA384", "{}", h.output);
    drop(proxy);

    let mut config = with_https(lone_config(), &cert, &key);
    config["tls"] = json!({
        "max_version": "tls1.2",
        "ciphers": ["TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"],
    });
    let proxy = start_https_proxy(config, &cert);
    let port = proxy.port();
    let h = s_client(port, &cert, &["-tls1_2"]);
    assert_negotiated(&h, "TLSv1.2", "AES-128 only");
    assert_eq!(h.cipher, "ECDHE-RSA-AES128-GCM-SHA256", "{}", h.output);
    let h = s_client(
        port,
        &cert,
        &["-tls1_2", "-cipher", "ECDHE-RSA-AES256-GCM-SHA384"],
    );
    assert_refused_by_proxy(&h, "tls.ciphers AES-128 only, client offers AES-256 only");
    let h = s_client(
        port,
        &cert,
        &["-tls1_2", "-cipher", "ECDHE-RSA-CHACHA20-POLY1305"],
    );
    assert_refused_by_proxy(&h, "tls.ciphers AES-128 only, client offers CHACHA20 only");
    // The proxy still serves HTTP on the chosen suite.
    let agent = https_agent_no_keepalive(&cert, Duration::from_secs(5));
    let r = must(
        &agent,
        "GET",
        &format!("{}/ping", https_url(port)),
        &[],
        b"",
    );
    assert_eq!(r.status, 204);
    drop(proxy);

    // An unknown name: refused at start.
    let dir = TempDir::new("tlscipher");
    let mut config = with_https(lone_config(), &cert, &key);
    config["tls"] = json!({"ciphers": ["TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", "TLS_FOO"]});
    let (code, out) = run_config(&dir, config);
    assert!(
        code.is_some_and(|c| c != 0) && out.contains("unknown cipher suite: TLS_FOO"),
        "TLS_FOO: exit {code:?}\n{out}"
    );

    // A Go CBC name next to a GCM one: starts, the CBC one is not offered.
    let mut config = with_https(lone_config(), &cert, &key);
    config["tls"] = json!({
        "max_version": "tls1.2",
        "ciphers": ["TLS_RSA_WITH_AES_128_CBC_SHA", "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"],
    });
    let proxy = start_https_proxy(config, &cert);
    assert!(
        proxy
            .log()
            .contains("TLS_RSA_WITH_AES_128_CBC_SHA is not offered"),
        "{}",
        proxy.log()
    );
    let h = s_client(proxy.port(), &cert, &["-tls1_2"]);
    assert_negotiated(&h, "TLSv1.2", "CBC + GCM");
    assert_eq!(h.cipher, "ECDHE-RSA-AES128-GCM-SHA256", "{}", h.output);
    let h = s_client(
        proxy.port(),
        &cert,
        &["-tls1_2", "-cipher", "AES128-SHA:@SECLEVEL=0"],
    );
    assert_refused_by_proxy(&h, "CBC + GCM, client offers AES128-SHA (CBC) only");
    drop(proxy);

    // Only CBC names with max tls1.2: nothing to offer, refused at start.
    let mut config = with_https(lone_config(), &cert, &key);
    config["tls"] = json!({"max_version": "tls1.2", "ciphers": ["TLS_RSA_WITH_AES_128_CBC_SHA"]});
    let (code, out) = run_config(&dir, config);
    assert!(
        code.is_some_and(|c| c != 0) && out.contains("tls.ciphers"),
        "CBC only with max tls1.2: exit {code:?}\n{out}"
    );
    eprintln!("cipher checks took {:?}", t.elapsed());
}

// ---------------------------------------------------------------------------
// 4. Bad certificate and key files.

#[test]
fn bad_certificate_or_key_files_stop_the_proxy_at_start() {
    let certs = Certs::new();
    let (cert, key) = certs.self_signed("proxy");
    let (_other_cert, other_key) = certs.self_signed("other");
    let garbage = certs.path("garbage.pem");
    std::fs::write(&garbage, "not a certificate\n").unwrap();
    let missing = certs.path("missing.pem");
    let dir = TempDir::new("tlsbad");
    let t = Instant::now();

    let cases: Vec<(&str, Value, Vec<&str>)> = vec![
        (
            "missing certificate file",
            with_https(lone_config(), &missing, &key),
            vec!["https_cert", "missing.pem"],
        ),
        (
            "missing key file",
            with_https(lone_config(), &cert, &missing),
            vec!["https_key", "missing.pem"],
        ),
        (
            "a key that does not match the certificate",
            with_https(lone_config(), &cert, &other_key),
            vec!["https_cert", "https_key"],
        ),
        (
            "a certificate file without PEM",
            with_https(lone_config(), &garbage, &key),
            vec!["https_cert", "garbage.pem"],
        ),
        (
            "a key file holding a certificate",
            with_https(lone_config(), &cert, &cert),
            vec!["https_key"],
        ),
        (
            "https_enabled without files",
            json!({
                "circles": [{"name": "c", "backends": [{"name": "b", "url": refused_url()}]}],
                "https_enabled": true,
            }),
            vec!["https_cert"],
        ),
    ];
    for (what, config, words) in cases {
        let (code, out) = run_config(&dir, config);
        assert!(
            code.is_some_and(|c| c != 0),
            "{what}: the proxy should exit non-zero at start, got {code:?}:\n{out}"
        );
        for w in words {
            assert!(
                out.contains(w),
                "{what}: the message should name {w}:\n{out}"
            );
        }
    }
    eprintln!("bad files took {:?}", t.elapsed());
}

// ---------------------------------------------------------------------------
// 5. and 6. Slow handshakes and the connection cap.

/// The first bytes of a TLS ClientHello: a handshake record of 200 bytes
/// of which only 6 follow.
const PARTIAL_CLIENT_HELLO: &[u8] = &[
    0x16, 0x03, 0x01, 0x00, 0xc8, 0x01, 0x00, 0x00, 0xc4, 0x03, 0x03,
];

#[test]
fn silent_and_partial_handshakes_block_no_one_and_are_closed_after_idle_timeout() {
    let certs = Certs::new();
    let (cert, key) = certs.self_signed("proxy");
    let mut config = with_https(lone_config(), &cert, &key);
    config["idle_timeout"] = json!(2);
    let mut proxy = start_https_proxy(config, &cert);
    let pid = proxy.pid().expect("pid");
    let url = format!("{}/ping", https_url(proxy.port()));
    let agent = https_agent_no_keepalive(&cert, Duration::from_secs(5));
    // Settle: a few requests, then the thread count at rest.
    for _ in 0..3 {
        assert_eq!(must(&agent, "GET", &url, &[], b"").status, 204);
    }
    wait_tls_connections_gone(pid);
    let baseline = threads(pid);

    const N: u64 = 50;
    let opened = Instant::now();
    let mut held: Vec<TcpStream> = (0..N)
        .map(|i| {
            let mut s = TcpStream::connect(proxy.addr()).expect("connect");
            if i % 2 == 1 {
                s.write_all(PARTIAL_CLIENT_HELLO)
                    .expect("partial ClientHello");
            }
            s
        })
        .collect();
    // Every one is taken by the proxy (a thread each), none answered.
    let mut peak = 0;
    wait_until(
        Duration::from_secs(3),
        "the proxy to take the 50 connections",
        || {
            peak = peak.max(threads(pid));
            peak >= baseline + N
        },
    );

    // A normal client is served at once.
    let t = Instant::now();
    let r =
        http_send(&agent, "GET", &url, &[], &[], b"").expect("ping with 50 silent handshakes open");
    let took = t.elapsed();
    assert_eq!(r.status, 204);
    assert!(
        took < Duration::from_secs(1),
        "ping took {took:?} with 50 silent handshakes open"
    );
    peak = peak.max(threads(pid));
    assert!(
        peak <= baseline + N + 10,
        "threads: {peak} at the peak, {baseline} at rest, {N} connections"
    );

    // idle_timeout 2: each is closed by the proxy by ~3 s after it opened.
    let mut closed_at = Vec::new();
    for (i, s) in held.iter_mut().enumerate() {
        let wait = (opened + Duration::from_millis(3500)).saturating_duration_since(Instant::now());
        assert!(
            closed_within(s, wait),
            "connection {i} ({}) still open {:?} after it was opened (idle_timeout 2)",
            if i % 2 == 1 {
                "partial ClientHello"
            } else {
                "silent"
            },
            opened.elapsed()
        );
        closed_at.push(opened.elapsed());
    }
    let first = closed_at.iter().min().copied().unwrap_or_default();
    let last = closed_at.iter().max().copied().unwrap_or_default();
    assert!(
        first >= Duration::from_millis(1500),
        "a handshake was cut {first:?} after it opened, before idle_timeout (2 s)"
    );
    wait_until(
        Duration::from_secs(5),
        "the proxy's threads back near their baseline",
        || threads(pid) <= baseline + 3,
    );
    drop(held);
    assert_eq!(must(&agent, "GET", &url, &[], b"").status, 204);
    proxy.assert_running();
    eprintln!(
        "50 silent handshakes: peak {peak} threads (baseline {baseline}), all closed by {last:?}"
    );
}

#[test]
fn a_handshake_trickled_byte_by_byte_is_cut_after_idle_timeout() {
    let certs = Certs::new();
    let (cert, key) = certs.self_signed("proxy");
    let mut config = with_https(lone_config(), &cert, &key);
    config["idle_timeout"] = json!(2);
    let mut proxy = start_https_proxy(config, &cert);
    let mut s = TcpStream::connect(proxy.addr()).expect("connect");
    // A handshake record of 16 KiB, sent one byte every 250 ms: each read
    // brings something, but the handshake must still end by idle_timeout.
    s.write_all(&[0x16, 0x03, 0x01, 0x40, 0x00]).unwrap();
    let opened = Instant::now();
    let mut closed = None;
    for _ in 0..40 {
        if s.write_all(&[0x01]).is_err() || closed_within(&mut s, Duration::from_millis(250)) {
            closed = Some(opened.elapsed());
            break;
        }
    }
    let closed = closed.unwrap_or_else(|| {
        panic!(
            "a handshake trickled one byte every 250 ms is still open after {:?} (idle_timeout 2)",
            opened.elapsed()
        )
    });
    assert!(
        closed < Duration::from_millis(3500),
        "the trickled handshake was cut only after {closed:?} (idle_timeout 2)"
    );
    proxy.assert_running();
}

#[test]
fn after_the_handshake_a_slow_header_is_cut_by_idle_timeout() {
    let certs = Certs::new();
    let (cert, key) = certs.self_signed("proxy");
    let mut config = with_https(lone_config(), &cert, &key);
    config["idle_timeout"] = json!(2);
    let mut proxy = start_https_proxy(config, &cert);

    // Handshake done, then a header trickled one byte every 300 ms: the
    // janitor's slow-header rule applies to the decrypted bytes.
    let mut slow = tls_client(proxy.addr(), &cert);
    let opened = Instant::now();
    let header = b"GET /ping HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ".to_vec();
    let mut cut = None;
    for b in header.iter().cycle().take(30) {
        if slow.write_all(&[*b]).and_then(|_| slow.flush()).is_err() {
            cut = Some(opened.elapsed());
            break;
        }
        slow.sock
            .set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let mut buf = [0u8; 1024];
        match slow.read(&mut buf) {
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            // EOF, an answer or a reset: the proxy ended it.
            _ => {
                cut = Some(opened.elapsed());
                break;
            }
        }
    }
    let cut = cut.unwrap_or_else(|| {
        panic!(
            "a header trickled over TLS for {:?} was never cut (idle_timeout 2)",
            opened.elapsed()
        )
    });
    assert!(
        cut < Duration::from_secs(5),
        "a trickled header was cut only after {cut:?} (idle_timeout 2)"
    );
    let agent = https_agent_no_keepalive(&cert, Duration::from_secs(5));
    let r = must(
        &agent,
        "GET",
        &format!("{}/ping", https_url(proxy.port())),
        &[],
        b"",
    );
    assert_eq!(r.status, 204);
    proxy.assert_running();
    eprintln!("a slow header over TLS was cut after {cut:?}");
}

/// A TLS 1.3 client may send its first request right behind its Finished
/// message, in the same TCP segment (curl and Go do when the thread is
/// slow to be scheduled). The proxy then holds the request's plaintext in
/// its TLS state when the handshake ends, with nothing more to come on the
/// socket: it must still be relayed and answered.
#[test]
fn a_request_in_the_same_segment_as_the_client_finished_is_answered() {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, ServerName};
    let certs = Certs::new();
    let (cert, key) = certs.self_signed("proxy");
    let mut proxy = start_https_proxy(with_https(lone_config(), &cert, &key), &cert);

    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(&cert).expect("read the certificate") {
        roots.add(c.expect("PEM")).expect("add root");
    }
    let config = Arc::new(
        rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("TLS 1.3")
        .with_root_certificates(roots)
        .with_no_client_auth(),
    );
    let name = ServerName::try_from("127.0.0.1").expect("name").to_owned();
    for round in 0..5 {
        let mut conn = rustls::ClientConnection::new(Arc::clone(&config), name.clone()).unwrap();
        let mut tcp = TcpStream::connect(proxy.addr()).expect("connect");
        tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        tcp.set_nodelay(true).unwrap();
        // ClientHello, then the server's flight until the client is done.
        while conn.wants_write() {
            conn.write_tls(&mut tcp).expect("send ClientHello");
        }
        while conn.is_handshaking() {
            assert!(conn.read_tls(&mut tcp).expect("read the server's flight") > 0);
            conn.process_new_packets().expect("server flight");
        }
        // The client's Finished is still queued: the request joins it, and
        // both leave in one write.
        conn.writer()
            .write_all(b"GET /ping HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut chunks = Vec::new();
        while conn.wants_write() {
            chunks.push(
                conn.write_tls(&mut tcp)
                    .expect("send Finished and the request"),
            );
        }
        let mut stream = rustls::StreamOwned::new(conn, tcp);
        let mut got = Vec::new();
        let t = Instant::now();
        let r = stream.read_to_end(&mut got);
        assert_eq!(
            raw_status(&got),
            Some(204),
            "round {round}: a request sent with the client's Finished (writes of {chunks:?} bytes) \
             got no answer in {:?} ({r:?}): {:?}",
            t.elapsed(),
            String::from_utf8_lossy(&got)
        );
    }
    proxy.assert_running();
}

#[test]
fn max_connections_caps_https_connections_at_accept() {
    let certs = Certs::new();
    let (cert, key) = certs.self_signed("proxy");
    let mut config = with_https(lone_config(), &cert, &key);
    config["max_connections"] = json!(5);
    config["idle_timeout"] = json!(10);
    let mut proxy = start_https_proxy(config, &cert);
    let url = format!("{}/ping", https_url(proxy.port()));
    let agent = https_agent_no_keepalive(&cert, Duration::from_secs(5));
    assert_eq!(must(&agent, "GET", &url, &[], b"").status, 204);
    wait_tls_connections_gone(proxy.pid().expect("pid"));

    const N: usize = 20;
    const CAP: usize = 5;
    let opened = Instant::now();
    let mut conns: Vec<TcpStream> = (0..N)
        .map(|_| TcpStream::connect(proxy.addr()).expect("connect"))
        .collect();
    // Those beyond the cap are closed at once; the first CAP are held.
    let mut closed = vec![false; N];
    let deadline = opened + Duration::from_secs(2);
    while closed.iter().filter(|c| **c).count() < N - CAP && Instant::now() < deadline {
        for (i, s) in conns.iter_mut().enumerate() {
            if !closed[i] && closed_within(s, Duration::from_millis(20)) {
                closed[i] = true;
            }
        }
    }
    let took = opened.elapsed();
    let n_closed = closed.iter().filter(|c| **c).count();
    assert_eq!(
        n_closed,
        N - CAP,
        "{n_closed} of {N} connections closed within {took:?} with max_connections {CAP}: {closed:?}"
    );
    assert!(
        took < Duration::from_secs(1),
        "the extra connections were closed only after {took:?}"
    );
    // The held ones stay open (they are in their handshake)...
    holds_for(
        Duration::from_millis(300),
        "the connections within max_connections stay open",
        || {
            conns
                .iter_mut()
                .zip(&closed)
                .all(|(s, closed)| *closed || !closed_within(s, Duration::from_millis(1)))
        },
    );
    // ...and while they are, a new client is refused too.
    let r = http_send(&agent, "GET", &url, &[], &[], b"");
    assert!(
        r.is_err(),
        "a client beyond max_connections was served: {r:?}"
    );

    // Released: normal clients are served again.
    conns.clear();
    wait_until(
        Duration::from_secs(3),
        "an https /ping once the held connections are gone",
        || matches!(http_send(&agent, "GET", &url, &[], &[], b""), Ok(r) if r.status == 204),
    );
    for i in 0..10 {
        let r = must(&agent, "GET", &url, &[], b"");
        assert_eq!(r.status, 204, "ping {i} after the release");
    }
    // Five kept-alive clients at once fit under the cap.
    let keep: Vec<ureq::Agent> = (0..CAP)
        .map(|_| https_agent(&cert, Duration::from_secs(5)))
        .collect();
    for round in 0..3 {
        for (i, a) in keep.iter().enumerate() {
            let r = must(a, "GET", &url, &[], b"");
            assert_eq!(r.status, 204, "kept-alive client {i}, round {round}");
        }
    }
    proxy.assert_running();
    eprintln!(
        "max_connections {CAP}: {} extra connections closed within {took:?}",
        N - CAP
    );
}

// ---------------------------------------------------------------------------
// 7. Backends over HTTPS.

/// `POST <influxd>/query?q=..` over HTTPS with `agent`; panics on an error.
fn influxd_exec(agent: &ureq::Agent, d: &Influxd, q: &str) {
    let r = must(
        agent,
        "POST",
        &format!("{}/query", d.url()),
        &[("q", q)],
        b"",
    );
    assert!(
        r.status == 200 && !r.body.contains("\"error\""),
        "{q}: {r:?}"
    );
}

/// Rows of `SELECT * FROM <mm> GROUP BY *` on an HTTPS influxd.
fn influxd_rows(agent: &ureq::Agent, d: &Influxd, db: &str, mm: &str) -> Vec<Row> {
    let r = must(
        agent,
        "GET",
        &format!("{}/query", d.url()),
        &[
            ("db", db),
            (
                "q",
                &format!("SELECT * FROM {} GROUP BY *", quote_ident(mm)),
            ),
            ("epoch", "ns"),
        ],
        b"",
    );
    assert_eq!(r.status, 200, "{r:?}");
    rows_of(&r.json())
}

fn backend_config(d: &Influxd) -> Value {
    let mut config = config_for_urls(&[vec![d.url()]]);
    config["flush_time"] = json!(1);
    config["check_interval"] = json!(1);
    config["write_timeout"] = json!(2);
    config
}

#[test]
fn an_https_backend_verified_with_backend_ca_file_gets_writes_and_queries() {
    let certs = Certs::new();
    let (cert, key) = certs.self_signed("backend");
    let d = Influxd::start_https(&cert, &key);
    assert!(d.url().starts_with("https://"), "{}", d.url());
    let direct = https_agent(&cert, Duration::from_secs(10));
    influxd_exec(&direct, &d, "CREATE DATABASE tlsb");
    let name = backend_name(0, 0);

    let mut config = backend_config(&d);
    config["backend_ca_file"] = json!(s(&cert));
    let mut proxy = Proxy::start(config);
    wait_for_eq(
        Duration::from_secs(5),
        "the https backend active",
        &Some(true),
        || proxy.backend_active(&name),
    );
    let (status, body) = proxy.write(
        "tlsb",
        None,
        "sec,host=a v=1 1700000000000000000\nsec,host=b v=2 1700000000000000001",
    );
    assert_eq!(status, 204, "{body}");
    wait_for_eq(DELIVERY, "both points in the https influxd", &2, || {
        influxd_rows(&direct, &d, "tlsb", "sec").len()
    });
    let (status, _, body) = proxy.get("/query?db=tlsb&epoch=ns&q=SELECT+v+FROM+sec");
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(
        v["results"][0]["series"][0]["values"],
        json!([
            [1_700_000_000_000_000_000i64, 1],
            [1_700_000_000_000_000_001i64, 2]
        ]),
        "{body}"
    );
    // DDL and SHOW go to the https backend too.
    let (status, _, body) = proxy.get("/query?q=CREATE+DATABASE+tlsb2");
    assert_eq!(status, 200, "{body}");
    let (status, _, body) = proxy.get("/query?q=SHOW+DATABASES");
    assert!(status == 200 && body.contains("\"tlsb2\""), "{body}");
    assert_eq!(proxy.backend_active(&name), Some(true));
    let b = proxy.backend_health(&name);
    assert_eq!(b["points"]["delivered"], json!(2), "{b}");
    proxy.assert_running();
}

/// A backend starts active, as in the Go proxy, until its first ping (here a
/// failed handshake) says otherwise; after that verdict, several health
/// rounds must never find it active.
fn assert_never_active(proxy: &Proxy, name: &str, what: &str) {
    wait_for_eq(
        Duration::from_secs(5),
        "the first health verdict",
        &Some(false),
        || proxy.backend_active(name),
    );
    holds_for(Duration::from_secs(3), what, || {
        proxy.backend_active(name) == Some(false)
    });
}

/// Points of `mm` written for backend `name`, whose certificate does not
/// verify, wait in its spool: they reach the spool, and not the backend
/// (read with `direct`) during a window of several health rounds.
fn assert_kept_in_spool(
    proxy: &Proxy,
    name: &str,
    (direct, d): (&ureq::Agent, &Influxd),
    mm: &str,
) {
    wait_until(
        Duration::from_secs(10),
        &format!("{mm} in the spool"),
        || proxy.records_waiting(name) >= 1,
    );
    holds_for(
        Duration::from_millis(1500),
        &format!("{mm}: no point reaches a backend whose certificate did not verify"),
        || influxd_rows(direct, d, "tlsb", mm).is_empty(),
    );
}

#[test]
fn an_https_backend_unverifiable_by_mozilla_roots_is_never_active_until_skip_verify() {
    let certs = Certs::new();
    let (cert, key) = certs.self_signed("backend");
    let d = Influxd::start_https(&cert, &key);
    let direct = https_agent(&cert, Duration::from_secs(10));
    influxd_exec(&direct, &d, "CREATE DATABASE tlsb");
    let name = backend_name(0, 0);

    let mut proxy = Proxy::start(backend_config(&d));
    assert_never_active(
        &proxy,
        &name,
        "a self-signed backend passed verification against Mozilla's roots",
    );
    let (status, body) = proxy.write(
        "tlsb",
        None,
        "spooled,host=a v=1 1700000000000000000\nspooled,host=b v=2 1700000000000000001",
    );
    assert_eq!(
        status, 204,
        "writes are spooled while the backend is unverified: {body}"
    );
    wait_until(
        Duration::from_secs(5),
        "the proxy log naming the certificate problem",
        || {
            let log = proxy.log().to_ascii_lowercase();
            log.contains(&name) && (log.contains("certificate") || log.contains("unknownissuer"))
        },
    );
    assert_kept_in_spool(&proxy, &name, (&direct, &d), "spooled");
    let b = proxy.backend_health(&name);
    assert_eq!(b["backlog"], json!(true), "spooled: {b}");
    assert!(
        b["spool"]["records_waiting"].as_u64().unwrap_or(0) >= 1,
        "spooled: {b}"
    );

    // Same data_dir, verification off: the spool is delivered.
    assert!(
        proxy.terminate(Duration::from_secs(10)).is_some(),
        "graceful stop"
    );
    let path = proxy.config_path();
    let mut config: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    config["backend_insecure_skip_verify"] = json!(true);
    std::fs::write(&path, serde_json::to_vec_pretty(&config).unwrap()).unwrap();
    proxy.restart();
    wait_for_eq(
        Duration::from_secs(5),
        "the backend active with skip verify",
        &Some(true),
        || proxy.backend_active(&name),
    );
    wait_for_eq(DELIVERY, "the spooled points delivered", &2, || {
        influxd_rows(&direct, &d, "tlsb", "spooled").len()
    });
    proxy.assert_running();
}

#[test]
fn an_https_backend_signed_by_a_ca_is_verified_through_the_chain_and_refused_with_another_ca() {
    let certs = Certs::new();
    let ca = certs.ca("ca");
    let (wrong_ca, _) = certs.ca("wrong");
    let (leaf, leaf_key) = certs.leaf("backend", &ca);
    let d = Influxd::start_https(&leaf, &leaf_key);
    let direct = https_agent(&ca.0, Duration::from_secs(10));
    influxd_exec(&direct, &d, "CREATE DATABASE tlsb");
    let name = backend_name(0, 0);

    let mut config = backend_config(&d);
    config["backend_ca_file"] = json!(s(&ca.0));
    let proxy = Proxy::start(config);
    wait_for_eq(
        Duration::from_secs(5),
        "the backend active (CA chain)",
        &Some(true),
        || proxy.backend_active(&name),
    );
    let (status, body) = proxy.write("tlsb", None, "chain,host=a v=1 1700000000000000000");
    assert_eq!(status, 204, "{body}");
    wait_for_eq(DELIVERY, "the point in the https influxd", &1, || {
        influxd_rows(&direct, &d, "tlsb", "chain").len()
    });
    drop(proxy);

    let mut config = backend_config(&d);
    config["backend_ca_file"] = json!(s(&wrong_ca));
    let proxy = Proxy::start(config);
    assert_never_active(
        &proxy,
        &name,
        "a backend signed by another CA passed verification",
    );
    let (status, body) = proxy.write("tlsb", None, "wrongca,host=a v=1 1700000000000000000");
    assert_eq!(status, 204, "{body}");
    assert_kept_in_spool(&proxy, &name, (&direct, &d), "wrongca");
}

#[test]
fn a_bad_backend_ca_file_stops_the_proxy_at_start() {
    let certs = Certs::new();
    let dir = TempDir::new("tlscafile");
    let garbage = certs.path("garbage.pem");
    std::fs::write(&garbage, "no certificate here\n").unwrap();
    let backend = format!("https://127.0.0.1:{}", free_port());
    for (what, file) in [
        ("missing", certs.path("missing-ca.pem")),
        ("not PEM", garbage),
    ] {
        let mut config = config_for_urls(&[vec![backend.clone()]]);
        config["backend_ca_file"] = json!(s(&file));
        let (code, out) = run_config(&dir, config);
        assert!(
            code.is_some_and(|c| c != 0),
            "backend_ca_file {what}: the proxy should exit non-zero at start, got {code:?}:\n{out}"
        );
        assert!(
            out.contains("backend_ca_file") && out.contains(&s(&file)),
            "backend_ca_file {what}: the message should name the key and the file:\n{out}"
        );
    }
}

/// A TLS warning alert (`no_renegotiation`) as the very first record.
const WARNING_ALERT: &[u8] = &[0x15, 0x03, 0x01, 0x00, 0x02, 0x01, 0x64];

/// rustls logs through the `log` facade: its warning about an alert a
/// client sent reaches the proxy's log in our format, tagged with its target.
#[test]
fn a_dependency_warning_reaches_the_proxy_log() {
    let certs = Certs::new();
    let (cert, key) = certs.self_signed("proxy");
    let proxy = start_https_proxy(with_https(lone_config(), &cert, &key), &cert);
    let mut s = TcpStream::connect(proxy.addr()).expect("connect");
    s.write_all(WARNING_ALERT).expect("send the alert");
    wait_until(
        Duration::from_secs(10),
        "rustls's warning in the proxy log",
        || {
            proxy.log().lines().any(|l| {
                l.contains(" [rustls::") && l.contains("] warn: TLS alert warning received")
            })
        },
    );
}

/// The TCP ports process `pid` listens on: its socket inodes matched in
/// `/proc/<pid>/net/tcp` (IPv4), in state LISTEN.
fn listening_ports(pid: u32) -> Vec<u16> {
    let inodes: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("list the proxy's descriptors")
        .flatten()
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .filter_map(|l| {
            let l = l.to_string_lossy().into_owned();
            Some(l.strip_prefix("socket:[")?.strip_suffix(']')?.to_string())
        })
        .collect();
    let table = std::fs::read_to_string(format!("/proc/{pid}/net/tcp")).expect("net/tcp");
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let cols: Vec<&str> = line.split_whitespace().collect();
            let (local, state, inode) = (cols.get(1)?, cols.get(3)?, cols.get(9)?);
            if *state != "0A" || !inodes.iter().any(|i| i == inode) {
                return None;
            }
            u16::from_str_radix(local.rsplit(':').next()?, 16).ok()
        })
        .collect()
}

/// With `https_enabled`, tiny_http listens on a loopback port behind the TLS
/// front; a local client that connects there in plain HTTP is served
/// nothing, while requests through the front are answered as before.
#[test]
fn the_loopback_port_behind_the_tls_front_serves_no_plain_http_client() {
    let certs = Certs::new();
    let (cert, key) = certs.self_signed("proxy");
    let proxy = start_https_proxy(with_https(lone_config(), &cert, &key), &cert);
    let pid = proxy.pid().expect("pid");
    let inner: Vec<u16> = listening_ports(pid)
        .into_iter()
        .filter(|&p| p != proxy.port())
        .collect();
    assert_eq!(
        inner.len(),
        1,
        "one loopback port behind the front: {inner:?}"
    );
    let inner = SocketAddr::from(([127, 0, 0, 1], inner[0]));
    let requests: [&[u8]; 3] = [
        b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n",
        b"POST /write?db=db0 HTTP/1.1\r\nHost: x\r\nContent-Length: 8\r\n\r\ncpu v=1\n",
    ];
    for request in requests {
        let got = raw_request(inner, request, Duration::from_secs(5));
        assert!(
            raw_status(&got).is_none(),
            "plain HTTP on the loopback port {inner} was answered: {:?} for {:?}",
            String::from_utf8_lossy(&got),
            String::from_utf8_lossy(request)
        );
    }
    let agent = https_agent(&cert, Duration::from_secs(5));
    let url = format!("{}/ping", https_url(proxy.port()));
    for _ in 0..3 {
        assert_eq!(must(&agent, "GET", &url, &[], b"").status, 204);
    }
}
