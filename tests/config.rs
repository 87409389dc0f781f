//! Command line and config validation, by running the binary.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};

/// How long a binary given a bad config may take to exit.
const EXIT: Duration = Duration::from_secs(10);

/// A minimal valid config (backend URLs never contacted before validation).
fn valid() -> Value {
    json!({
        "circles": [
            {"name": "circle-1", "backends": [
                {"name": "b-1-1", "url": "http://127.0.0.1:18086"},
                {"name": "b-1-2", "url": "http://127.0.0.1:18087"}
            ]},
            {"name": "circle-2", "backends": [
                {"name": "b-2-1", "url": "http://127.0.0.1:18088"}
            ]}
        ]
    })
}

/// Runs the binary on `text` as its config file; it must exit non-zero.
/// Returns its output.
fn run_bad(text: &str, what: &str) -> String {
    let dir = TempDir::new("config");
    let path = dir.path().join("proxy.json");
    std::fs::write(&path, text).unwrap();
    let (code, out) = run_proxy_binary(&["-config", path.to_str().unwrap()], dir.path(), EXIT);
    match code {
        None => panic!("{what}: the binary was still running after {EXIT:?}; output:\n{out}"),
        Some(0) => panic!("{what}: exit code 0 with a bad config; output:\n{out}"),
        Some(_) => out,
    }
}

/// Adds a listen_addr and data dirs under a temp dir, so that a binary that
/// wrongly accepts the config does not touch anything shared.
fn with_safe_dirs(mut v: Value) -> Value {
    let obj = v.as_object_mut().unwrap();
    obj.insert(
        "listen_addr".into(),
        json!(format!("127.0.0.1:{}", free_port())),
    );
    let tmp = std::env::temp_dir().join(format!("influx-proxy-test-cfg-{}", std::process::id()));
    obj.insert(
        "data_dir".into(),
        json!(tmp.join("spool").display().to_string()),
    );
    obj.insert(
        "tlog_dir".into(),
        json!(tmp.join("tlog").display().to_string()),
    );
    v
}

fn assert_rejected(config: Value, what: &str, message: &str, key: &str) {
    let out = run_bad(&with_safe_dirs(config).to_string(), what);
    assert!(
        out.contains(message),
        "{what}: output lacks {message:?}:\n{out}"
    );
    let key_text = format!("`{key}`");
    assert!(
        out.contains(&key_text),
        "{what}: output does not name the key {key_text}:\n{out}"
    );
}

#[test]
fn empty_or_missing_circles_are_rejected() {
    assert_rejected(
        json!({"circles": []}),
        "circles: []",
        "circles cannot be empty",
        "circles",
    );
    assert_rejected(
        json!({}),
        "no circles key",
        "circles cannot be empty",
        "circles",
    );
}

#[test]
fn circle_without_backends_is_rejected() {
    let mut c = valid();
    c["circles"][1]["backends"] = json!([]);
    assert_rejected(
        c,
        "circle-2 has no backends",
        "backends cannot be empty",
        "circles[1].backends",
    );
    let mut c = valid();
    c["circles"][0].as_object_mut().unwrap().remove("backends");
    assert_rejected(
        c,
        "circle-1 has no backends key",
        "backends cannot be empty",
        "circles[0].backends",
    );
}

#[test]
fn backend_without_name_is_rejected() {
    let mut c = valid();
    c["circles"][0]["backends"][0]["name"] = json!("");
    assert_rejected(
        c,
        "empty backend name",
        "backend name cannot be empty",
        "circles[0].backends[0].name",
    );
    let mut c = valid();
    c["circles"][1]["backends"][0]
        .as_object_mut()
        .unwrap()
        .remove("name");
    assert_rejected(
        c,
        "missing backend name",
        "backend name cannot be empty",
        "circles[1].backends[0].name",
    );
}

#[test]
fn duplicated_backend_name_is_rejected() {
    // Across circles.
    let mut c = valid();
    c["circles"][1]["backends"][0]["name"] = json!("b-1-2");
    assert_rejected(
        c,
        "name reused in another circle",
        "backend name duplicated: b-1-2",
        "circles[1].backends[0].name",
    );
    // Inside one circle.
    let mut c = valid();
    c["circles"][0]["backends"][1]["name"] = json!("b-1-1");
    assert_rejected(
        c,
        "name reused in the same circle",
        "backend name duplicated: b-1-1",
        "circles[0].backends[1].name",
    );
}

#[test]
fn invalid_hash_key_is_rejected() {
    for hk in ["foo", "IDX", "%id"] {
        let mut c = valid();
        c["hash_key"] = json!(hk);
        assert_rejected(
            c,
            &format!("hash_key {hk:?}"),
            "invalid hash_key, require idx, exi, name, url or template containing %idx",
            "hash_key",
        );
    }
}

#[test]
fn invalid_shard_key_is_rejected() {
    for sk in ["static", "%d", "%MM"] {
        let mut c = valid();
        c["shard_key"] = json!(sk);
        assert_rejected(
            c,
            &format!("shard_key {sk:?}"),
            "invalid shard_key, require template containing %db or %mm",
            "shard_key",
        );
    }
}

#[test]
fn invalid_backend_url_is_rejected() {
    for url in [
        "",
        "127.0.0.1:8086",
        "ftp://127.0.0.1:8086",
        "http://",
        "not a url",
    ] {
        let mut c = valid();
        c["circles"][0]["backends"][1]["url"] = json!(url);
        let out = run_bad(&with_safe_dirs(c).to_string(), &format!("url {url:?}"));
        assert!(
            out.contains("`circles[0].backends[1].url`"),
            "url {url:?}: output does not name the key `circles[0].backends[1].url`:\n{out}"
        );
        assert!(
            out.contains("url"),
            "url {url:?}: message does not say url:\n{out}"
        );
    }
}

/// A value of the wrong JSON type names its key (with its path inside
/// circles and backends) and the type the key takes, not serde's Rust types.
#[test]
fn value_of_the_wrong_type_names_its_key_and_the_type_expected() {
    // The key as the message names it, how to set the bad value, the message.
    type Case = (&'static str, fn(&mut Value), &'static str);
    let cases: [Case; 7] = [
        (
            "check_interval",
            |c| c["check_interval"] = json!("10000"),
            "expected a number, found string \"10000\"",
        ),
        (
            "https_enabled",
            |c| c["https_enabled"] = json!("yes"),
            "expected a boolean, found string \"yes\"",
        ),
        (
            "listen_addr",
            |c| c["listen_addr"] = json!(7076),
            "expected a string, found number 7076",
        ),
        (
            "db_list[1]",
            |c| c["db_list"] = json!(["a", 5]),
            "expected a string, found number 5",
        ),
        (
            "circles[0].backends[1].url",
            |c| c["circles"][0]["backends"][1]["url"] = json!(true),
            "expected a string, found boolean true",
        ),
        (
            "circles[1].backends",
            |c| c["circles"][1]["backends"] = json!({"name": "b"}),
            "expected an array, found an object",
        ),
        (
            "tls.min_version",
            |c| c["tls"] = json!({"min_version": 1.2}),
            "expected a string, found number 1.2",
        ),
    ];
    for (key, set, message) in cases {
        // `with_safe_dirs` first: a case may replace one of its keys.
        let mut c = with_safe_dirs(valid());
        set(&mut c);
        let out = run_bad(&c.to_string(), key);
        let want = format!("illegal config file: {message} (key `{key}`)");
        assert!(out.contains(&want), "{key}: output lacks {want:?}:\n{out}");
    }
}

#[test]
fn invalid_json_is_an_illegal_config_file() {
    for text in ["{", "not json", "{\"circles\": [}", "", "{\"circles\": 5}"] {
        let out = run_bad(text, &format!("config text {text:?}"));
        assert!(
            out.lines().any(|l| l.contains("illegal config file")),
            "config text {text:?}: output lacks 'illegal config file':\n{out}"
        );
    }
}

#[test]
fn missing_config_file_exits_non_zero_with_a_message() {
    let dir = TempDir::new("config");
    let path = dir.path().join("does-not-exist.json");
    let (code, out) = run_proxy_binary(&["-config", path.to_str().unwrap()], dir.path(), EXIT);
    assert!(
        matches!(code, Some(c) if c != 0),
        "missing config file: exit {code:?}; output:\n{out}"
    );
    assert!(!out.trim().is_empty(), "missing config file: no message");
    eprintln!("missing config file says: {}", out.trim());
}

#[test]
fn version_flag_prints_the_version_the_server_reports() {
    let d = Influxd::start();
    let proxy = Proxy::start(config_for_urls(&[vec![d.url()]]));
    let (_, headers, _) = proxy.get("/ping");
    let version = headers
        .get("x-influxdb-version")
        .cloned()
        .expect("/ping X-Influxdb-Version");
    let dir = TempDir::new("version");
    for flag in ["-version", "--version"] {
        let (code, out) = run_proxy_binary(&[flag], dir.path(), EXIT);
        assert_eq!(code, Some(0), "{flag}: exit code; output:\n{out}");
        assert!(
            out.contains(&version),
            "{flag}: output does not contain the version {version:?} of X-Influxdb-Version:\n{out}"
        );
    }
}

#[test]
fn double_dash_config_flag_is_accepted() {
    let d = Influxd::start();
    let proxy = Proxy::start_with_flag(config_for_urls(&[vec![d.url()]]), "--config");
    let (status, _, _) = proxy.get("/ping");
    assert_eq!(status, 204);
}

// ---------------------------------------------------------------------------
// Formats: JSON, YAML, TOML; old and new names of one key.

use influx_proxy::config::Config;
use std::process::{Child, Command, Stdio};

/// `v` as a YAML document in block style (strings double-quoted as JSON
/// writes them, which YAML reads the same).
fn to_yaml(v: &Value) -> String {
    fn scalar(v: &Value) -> String {
        match v {
            Value::Array(a) if a.is_empty() => "[]".into(),
            Value::Object(o) if o.is_empty() => "{}".into(),
            other => other.to_string(),
        }
    }
    fn block(v: &Value, indent: usize, out: &mut String) {
        let pad = " ".repeat(indent);
        match v {
            Value::Object(map) if !map.is_empty() => {
                for (k, val) in map {
                    match val {
                        Value::Object(m) if !m.is_empty() => {
                            out.push_str(&format!("{pad}{k}:\n"));
                            block(val, indent + 2, out);
                        }
                        Value::Array(a) if !a.is_empty() => {
                            out.push_str(&format!("{pad}{k}:\n"));
                            block(val, indent + 2, out);
                        }
                        _ => out.push_str(&format!("{pad}{k}: {}\n", scalar(val))),
                    }
                }
            }
            Value::Array(items) if !items.is_empty() => {
                for item in items {
                    match item {
                        Value::Object(m) if !m.is_empty() => {
                            out.push_str(&format!("{pad}-\n"));
                            block(item, indent + 2, out);
                        }
                        Value::Array(a) if !a.is_empty() => {
                            out.push_str(&format!("{pad}-\n"));
                            block(item, indent + 2, out);
                        }
                        _ => out.push_str(&format!("{pad}- {}\n", scalar(item))),
                    }
                }
            }
            other => out.push_str(&format!("{pad}{}\n", scalar(other))),
        }
    }
    let mut out = String::from("# written by tests/config.rs\n");
    block(v, 0, &mut out);
    out
}

/// `v` (an object without nulls) as a TOML document: scalars first, then
/// tables and arrays of tables.
fn to_toml(v: &Value) -> String {
    fn inline(v: &Value) -> String {
        match v {
            Value::Array(items) => {
                let parts: Vec<String> = items.iter().map(inline).collect();
                format!("[{}]", parts.join(", "))
            }
            Value::Object(map) => {
                let parts: Vec<String> = map
                    .iter()
                    .map(|(k, v)| format!("{k} = {}", inline(v)))
                    .collect();
                format!("{{ {} }}", parts.join(", "))
            }
            Value::Null => panic!("TOML has no null"),
            other => other.to_string(),
        }
    }
    fn tables_of(v: &Value) -> Option<&Vec<Value>> {
        v.as_array()
            .filter(|a| !a.is_empty() && a.iter().all(Value::is_object))
    }
    fn table(map: &serde_json::Map<String, Value>, prefix: &str, out: &mut String) {
        let name = |k: &str| {
            if prefix.is_empty() {
                k.to_string()
            } else {
                format!("{prefix}.{k}")
            }
        };
        for (k, v) in map {
            if !v.is_object() && tables_of(v).is_none() {
                out.push_str(&format!("{k} = {}\n", inline(v)));
            }
        }
        for (k, v) in map {
            if let Value::Object(sub) = v {
                out.push_str(&format!("\n[{}]\n", name(k)));
                table(sub, &name(k), out);
            } else if let Some(items) = tables_of(v) {
                for item in items {
                    out.push_str(&format!("\n[[{}]]\n", name(k)));
                    table(item.as_object().unwrap(), &name(k), out);
                }
            }
        }
    }
    let mut out = String::from("# written by tests/config.rs\n");
    table(
        v.as_object().expect("a TOML document is a table"),
        "",
        &mut out,
    );
    out
}

const FORMATS: [&str; 3] = ["json", "yaml", "toml"];

/// `v` written in the format of extension `ext`.
fn render(v: &Value, ext: &str) -> String {
    match ext {
        "json" => serde_json::to_string_pretty(v).unwrap(),
        "yaml" | "yml" => to_yaml(v),
        "toml" => to_toml(v),
        other => panic!("no format {other}"),
    }
}

/// Loads `text` as the file `proxy.<ext>` through the library's loader.
fn load_text(text: &str, ext: &str) -> Result<Config, String> {
    let dir = TempDir::new("config-fmt");
    let path = dir.path().join(format!("proxy.{ext}"));
    std::fs::write(&path, text).unwrap();
    Config::load(&path)
        .map(|(c, _)| c)
        .map_err(|e| e.to_string())
}

/// The settings a config loads to, every field (`Config` is plain data).
fn settings(text: &str, ext: &str) -> String {
    match load_text(text, ext) {
        Ok(c) => format!("{c:#?}"),
        Err(e) => panic!("{ext}: refused: {e}\n{text}"),
    }
}

/// A config using every kind of key: nested tls, lists, floats and
/// integers, per-backend keys.
fn full() -> Value {
    json!({
        "circles": [
            {"name": "circle-1", "backends": [
                {"name": "b-1-1", "url": "http://127.0.0.1:18086", "username": "u",
                 "password": "p", "auth_encrypt": false, "write_only": false},
                {"name": "b-1-2", "url": "https://127.0.0.1:18087/", "write_only": true}
            ]},
            {"name": "circle-2", "backends": [
                {"name": "b-2-1", "url": "http://127.0.0.1:18088", "auth_encrypt": true,
                 "username": "aUwOAe6G5sxxMeOFA0hxYw", "password": "aUwOAe6G5sxxMeOFA0hxYw"}
            ]}
        ],
        "listen_addr": "127.0.0.1:7076",
        "db_list": ["db1", "db2"],
        "data_dir": "/tmp/influx-proxy-never-used/spool",
        "tlog_dir": "/tmp/influx-proxy-never-used/log",
        "hash_key": "exi",
        "shard_key": "%db.%mm",
        "vnode_size": 100,
        "flush_size": 5000,
        "flush_time": 0.5,
        "check_interval": 2,
        "rewrite_interval": 15,
        "rewrite_threads": 3,
        "conn_pool_size": 7,
        "write_timeout": 4,
        "idle_timeout": 30,
        "username": "admin",
        "password": "secret",
        "auth_encrypt": false,
        "ping_auth_enabled": true,
        "write_tracing": true,
        "query_tracing": false,
        "pprof_enabled": false,
        "https_enabled": false,
        "tls": {"ciphers": ["TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"], "min_version": "tls1.2",
                "max_version": "1.3"},
        "worker_threads": 3,
        "query_threads": 9,
        "max_body_size": 1000000,
        "spool_sync": "always",
        "spool_max_size": 123456789,
        "spool_segment_size": 8388608,
        "query_timeout": 12.5,
        "max_connections": 99,
        "max_header_size": 32768,
        "backend_insecure_skip_verify": true
    })
}

/// The same config written by hand in each format: loads to the same
/// settings, every field compared. The hand-written YAML uses an anchor, an
/// alias, a merge key and `~`; `flush_time: 1` and `1.0` are one setting.
#[test]
fn the_same_config_in_json_yaml_and_toml_loads_to_the_same_settings() {
    let json = settings(&full().to_string(), "json");
    for ext in ["yaml", "yml", "toml"] {
        let text = render(&full(), ext);
        assert_eq!(
            settings(&text, ext),
            json,
            "{ext} differs from JSON:\n{text}"
        );
    }
    let yaml = r#"
# YAML written as people write it
creds: &creds
  username: aUwOAe6G5sxxMeOFA0hxYw
  password: aUwOAe6G5sxxMeOFA0hxYw
  auth_encrypt: true
circles:
  - name: circle-1
    backends:
      - {name: b-1-1, url: "http://127.0.0.1:18086", username: u, password: p}
      - name: b-1-2
        url: https://127.0.0.1:18087/
        write_only: yes_is_not_a_bool_here_so_not_used
  - name: circle-2
    backends:
      - <<: *creds
        name: b-2-1
        url: http://127.0.0.1:18088
listen_addr: 127.0.0.1:7076
db_list: [db1, db2]
data_dir: /tmp/influx-proxy-never-used/spool
tlog_dir: /tmp/influx-proxy-never-used/log
hash_key: exi
shard_key: "%db.%mm"
vnode_size: 100
flush_size: 5000
flush_time: 0.5
check_interval: 2.0
rewrite_interval: 15
rewrite_threads: 3
conn_pool_size: 7
write_timeout: 4
idle_timeout: 30
username: admin
password: secret
auth_encrypt: ~
ping_auth_enabled: true
write_tracing: true
query_tracing: false
tls:
  ciphers:
    - TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256
  min_version: tls1.2
  max_version: "1.3"
worker_threads: 3
query_threads: 9
max_body_size: 1000000
spool_sync: always
spool_max_size: 123456789
spool_segment_size: 8388608
query_timeout: 12.5
max_connections: 99
max_header_size: 32768
backend_insecure_skip_verify: true
"#;
    // `creds` is not a key of ours: a warning, not an error. The one line
    // with a string where a boolean goes is replaced before comparing.
    let yaml = yaml.replace("yes_is_not_a_bool_here_so_not_used", "true");
    assert_eq!(settings(&yaml, "yaml"), json, "hand-written YAML differs");
    let toml = r#"
# TOML written as people write it
listen_addr = "127.0.0.1:7076"
db_list = ["db1", "db2"]
data_dir = "/tmp/influx-proxy-never-used/spool"
tlog_dir = "/tmp/influx-proxy-never-used/log"
hash_key = "exi"
shard_key = "%db.%mm"
vnode_size = 100
flush_size = 5_000
flush_time = 0.5
check_interval = 2
rewrite_interval = 15.0
rewrite_threads = 3
conn_pool_size = 7
write_timeout = 4
idle_timeout = 30
username = "admin"
password = 'secret'
ping_auth_enabled = true
write_tracing = true
query_tracing = false
worker_threads = 3
query_threads = 9
max_body_size = 1_000_000
spool_sync = "always"
spool_max_size = 123456789
spool_segment_size = 8388608
query_timeout = 12.5
max_connections = 99
max_header_size = 32768
backend_insecure_skip_verify = true

[tls]
ciphers = ["TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"]
min_version = "tls1.2"
max_version = "1.3"

[[circles]]
name = "circle-1"
backends = [
  { name = "b-1-1", url = "http://127.0.0.1:18086", username = "u", password = "p" },
  { name = "b-1-2", url = "https://127.0.0.1:18087/", write_only = true },
]

[[circles]]
name = "circle-2"

[[circles.backends]]
name = "b-2-1"
url = "http://127.0.0.1:18088"
auth_encrypt = true
username = "aUwOAe6G5sxxMeOFA0hxYw"
password = "aUwOAe6G5sxxMeOFA0hxYw"
"#;
    assert_eq!(settings(toml, "toml"), json, "hand-written TOML differs");
    // Integers and floats are one number: 1 and 1.0 load alike.
    for ext in FORMATS {
        let mut a = valid();
        a["flush_time"] = json!(1);
        let mut b = valid();
        b["flush_time"] = json!(1.0);
        assert_eq!(
            settings(&render(&a, ext), ext),
            settings(&render(&b, ext), ext),
            "{ext}: flush_time 1 and 1.0"
        );
    }
}

/// Every refusal names its key, with its path, whatever the format.
#[test]
fn each_refusal_names_its_key_in_every_format() {
    type Case = (&'static str, fn(&mut Value), &'static str);
    let cases: [Case; 14] = [
        (
            "circles",
            |c| c["circles"] = json!([]),
            "circles cannot be empty",
        ),
        (
            "circles[1].backends",
            |c| c["circles"][1]["backends"] = json!([]),
            "backends cannot be empty",
        ),
        (
            "circles[0].backends[1].name",
            |c| c["circles"][0]["backends"][1]["name"] = json!(""),
            "backend name cannot be empty",
        ),
        (
            "circles[1].backends[0].name",
            |c| c["circles"][1]["backends"][0]["name"] = json!("b-1-1"),
            "backend name duplicated: b-1-1",
        ),
        (
            "circles[0].backends[1].url",
            |c| c["circles"][0]["backends"][1]["url"] = json!("127.0.0.1:1"),
            "invalid backend url",
        ),
        (
            "hash_key",
            |c| c["hash_key"] = json!("nope"),
            "invalid hash_key",
        ),
        (
            "tls.min_version",
            |c| c["tls"] = json!({"min_version": "tls9"}),
            "unknown tls version: tls9",
        ),
        (
            "check_interval",
            |c| c["check_interval"] = json!("10"),
            "expected a number, found string \"10\"",
        ),
        (
            "db_list[1]",
            |c| c["db_list"] = json!(["a", 5]),
            "expected a string, found number 5",
        ),
        (
            "circles[0].backends[1].write_only",
            |c| c["circles"][0]["backends"][1]["write_only"] = json!("yes"),
            "expected a boolean, found string \"yes\"",
        ),
        (
            "circles[0].backends[1].auth_secure",
            |c| {
                c["circles"][0]["backends"][1]["auth_secure"] = json!(true);
                c["circles"][0]["backends"][1]["auth_encrypt"] = json!(false);
            },
            "`auth_secure` (old name) is true but `auth_encrypt` is false",
        ),
        (
            "auth_secure",
            |c| {
                c["auth_secure"] = json!(false);
                c["auth_encrypt"] = json!(true);
            },
            "`auth_secure` (old name) is false but `auth_encrypt` is true",
        ),
        (
            "mlog_dir",
            |c| {
                c["mlog_dir"] = json!("/tmp/a");
                c["tlog_dir"] = json!("/tmp/b");
            },
            "`mlog_dir` (old name) is \"/tmp/a\" but `tlog_dir` is \"/tmp/b\"",
        ),
        (
            "log_enabled",
            |c| {
                c["log_enabled"] = json!(true);
                c["write_tracing"] = json!(false);
            },
            "`log_enabled` (old name) is true but `write_tracing` is false",
        ),
    ];
    for (key, set, message) in cases {
        let mut c = valid();
        set(&mut c);
        for ext in FORMATS {
            let text = render(&c, ext);
            let e = match load_text(&text, ext) {
                Ok(_) => panic!("{ext} {key}: accepted:\n{text}"),
                Err(e) => e,
            };
            assert!(e.contains(message), "{ext} {key}: {e:?} lacks {message:?}");
            assert!(
                e.contains(&format!("(key `{key}`)")),
                "{ext} {key}: {e:?} does not name the key"
            );
        }
    }
    // The binary says the same and exits non-zero, in each format.
    let mut c = with_safe_dirs(valid());
    c["circles"][0]["backends"][1]["auth_secure"] = json!(true);
    c["circles"][0]["backends"][1]["auth_encrypt"] = json!(false);
    for ext in FORMATS {
        let out = run_bad_as(&render(&c, ext), ext);
        assert!(
            out.contains(
                "illegal config file: `auth_secure` (old name) is true but `auth_encrypt` is false"
            ) && out.contains("(key `circles[0].backends[1].auth_secure`)"),
            "{ext}: {out}"
        );
    }
}

/// Runs the binary on `text` as `proxy.<ext>`; it must exit non-zero.
fn run_bad_as(text: &str, ext: &str) -> String {
    let dir = TempDir::new("config");
    let path = dir.path().join(format!("proxy.{ext}"));
    std::fs::write(&path, text).unwrap();
    let (code, out) = run_proxy_binary(&["-config", path.to_str().unwrap()], dir.path(), EXIT);
    match code {
        None => panic!("{ext}: the binary was still running after {EXIT:?}; output:\n{out}"),
        Some(0) => panic!("{ext}: exit code 0 with a bad config; output:\n{out}"),
        Some(_) => out,
    }
}

/// Old and new names of one key, given together and agreeing, are one
/// setting in every format (the Go proxy accepts such a file); the loaded
/// settings equal those of the file with the new names only.
#[test]
fn old_and_new_names_that_agree_are_accepted_in_every_format() {
    let mut new = valid();
    new["circles"][0]["backends"][1]["auth_encrypt"] = json!(true);
    new["auth_encrypt"] = json!(true);
    new["tlog_dir"] = json!("/tmp/influx-proxy-never-used/t");
    new["write_tracing"] = json!(true);
    new["query_tracing"] = json!(true);
    let mut both = new.clone();
    both["circles"][0]["backends"][1]["auth_secure"] = json!(true);
    both["auth_secure"] = json!(true);
    both["mlog_dir"] = json!("/tmp/influx-proxy-never-used/t");
    both["log_enabled"] = json!(true);
    let mut old = valid();
    old["circles"][0]["backends"][1]["auth_secure"] = json!(true);
    old["auth_secure"] = json!(true);
    old["mlog_dir"] = json!("/tmp/influx-proxy-never-used/t");
    old["log_enabled"] = json!(true);
    for ext in FORMATS {
        let want = settings(&render(&new, ext), ext);
        assert_eq!(
            settings(&render(&both, ext), ext),
            want,
            "{ext}: both names"
        );
        assert_eq!(settings(&render(&old, ext), ext), want, "{ext}: old names");
    }
}

/// Before: a JSON file giving `auth_secure` and `auth_encrypt` (or
/// `mlog_dir` and `tlog_dir`) was refused with serde's "duplicate field".
#[test]
fn a_json_file_with_old_and_new_names_agreeing_starts_the_proxy() {
    let mut c = valid();
    c["circles"][0]["backends"][0]["auth_secure"] = json!(false);
    c["circles"][0]["backends"][0]["auth_encrypt"] = json!(false);
    c["auth_secure"] = json!(false);
    c["auth_encrypt"] = json!(false);
    c["log_enabled"] = json!(false);
    c["write_tracing"] = json!(false);
    let proxy = Proxy::start(c);
    let (status, _, _) = proxy.get("/ping");
    assert_eq!(status, 204);
}

/// What only YAML or TOML can say: refused with the key or the line.
#[test]
fn format_specific_values_are_refused_with_their_key_or_line() {
    let base = to_toml(&valid());
    let e = load_text(
        &format!("{base}\n[tls]\nmin_version = 2024-01-01\n"),
        "toml",
    )
    .unwrap_err();
    assert!(
        e.contains("TOML datetime") && e.contains("(key `tls.min_version`)"),
        "{e}"
    );
    let e = load_text(&format!("flush_time = 1\nflush_time = 2\n{base}"), "toml").unwrap_err();
    assert!(
        e.contains("duplicate key `flush_time` at line 2 column 1"),
        "{e}"
    );
    let e = load_text(&format!("flush_time = \n{base}"), "toml").unwrap_err();
    assert!(e.contains("line 1") && e.contains("column"), "{e}");

    let base = to_yaml(&valid());
    let e = load_text(&format!("flush_time: 1\n{base}flush_time: 2\n"), "yaml").unwrap_err();
    assert!(
        e.contains("\"flush_time\"") && e.contains("duplicated key"),
        "{e}"
    );
    assert!(e.contains("line") && e.contains("column"), "{e}");
    let e = load_text(&format!("{base}db_list: [a, b\n"), "yaml").unwrap_err();
    assert!(e.contains("line") && e.contains("column"), "{e}");
    let e = load_text(&format!("{base}flush_time: .inf\n"), "yaml").unwrap_err();
    assert!(e.contains("(key `flush_time`)"), "{e}");
    // `~` is unset: the default, as an absent key.
    let c = load_text(&format!("{base}listen_addr: ~\nflush_size: null\n"), "yaml").unwrap();
    assert_eq!(c.listen_addr, ":7076");
    assert_eq!(c.flush_size, 10_000);
    // YAML 1.2: `yes` is a string, refused where a boolean goes.
    let e = load_text(&format!("{base}https_enabled: yes\n"), "yaml").unwrap_err();
    assert!(
        e.contains("expected a boolean, found string \"yes\" (key `https_enabled`)"),
        "{e}"
    );
    // JSON: a key given twice is refused too (serde_json alone keeps the last).
    let e = load_text(r#"{"circles": [], "circles": []}"#, "json").unwrap_err();
    assert!(e.contains("duplicate key `circles`"), "{e}");
    // An extension viper does not read either is refused, naming it.
    let out = run_bad_as(&valid().to_string(), "ini");
    assert!(
        out.contains("unsupported config type \"ini\"") && out.contains(".toml"),
        "{out}"
    );
}

/// A proxy process on `proxy.<ext>`, killed on drop.
struct FileProxy {
    child: Child,
    url: String,
    _dir: TempDir,
}

impl FileProxy {
    fn start(mut config: Value, ext: &str) -> FileProxy {
        let dir = TempDir::new("config-proxy");
        let port = free_port();
        config["listen_addr"] = json!(format!("127.0.0.1:{port}"));
        config["data_dir"] = json!(dir.path().join("spool").display().to_string());
        config["tlog_dir"] = json!(dir.path().join("tlog").display().to_string());
        let path = dir.path().join(format!("proxy.{ext}"));
        std::fs::write(&path, render(&config, ext)).unwrap();
        let log = std::fs::File::create(dir.path().join("proxy.log")).unwrap();
        let child = Command::new(PROXY_BIN)
            .arg("-config")
            .arg(&path)
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut p = FileProxy {
            child,
            url: format!("http://127.0.0.1:{port}"),
            _dir: dir,
        };
        let log_path = p._dir.path().join("proxy.log");
        wait_until(
            Duration::from_secs(15),
            &format!("{ext} proxy /ping"),
            || {
                if let Ok(Some(status)) = p.child.try_wait() {
                    panic!("{ext} proxy exited {status}: {}", file_tail(&log_path, 20));
                }
                ping_ok(&p.url)
            },
        );
        p
    }
}

impl Drop for FileProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_proxy_started_with_a_yaml_or_a_toml_config_serves_writes() {
    let d = Influxd::start();
    d.create_db("fmt");
    for ext in ["yaml", "yml", "toml"] {
        let p = FileProxy::start(config_for_urls(&[vec![d.url()]]), ext);
        let mm = format!("m_{ext}");
        let r = http_post(
            &format!("{}/write", p.url),
            &[("db", "fmt")],
            &[],
            format!("{mm} v=1 1\n{mm} v=2 2\n").as_bytes(),
        );
        assert_eq!(r.status, 204, "{ext}: write answered {}", r.body);
        wait_for_eq(
            Duration::from_secs(15),
            &format!("{ext}: influxd to hold 2 points"),
            &2,
            || d.count_v("fmt", &mm),
        );
    }
}
