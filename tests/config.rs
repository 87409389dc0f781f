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
