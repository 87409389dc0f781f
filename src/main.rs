//! The `influx-proxy` binary: flags as the Go proxy has them (`-config FILE`,
//! `-version`, also with two dashes), then [`influx_proxy::proxy::run`].

use std::path::PathBuf;
use std::process::ExitCode;

use influx_proxy::config::Config;
use influx_proxy::log;

#[global_allocator]
static ALLOCATOR: influx_proxy::alloc::Allocator = influx_proxy::alloc::Allocator;

const USAGE: &str = "usage: influx-proxy [-config FILE] [-version]
  -config FILE   proxy configuration file: .json, .yaml, .yml or .toml (default \"proxy.json\")
  -version       print the version and exit";

enum Command {
    Run(PathBuf),
    Version,
    Help,
}

fn parse_args(args: &[String]) -> Result<Command, String> {
    let mut config = PathBuf::from("proxy.json");
    let mut i = 0;
    while i < args.len() {
        let arg = args[i].as_str();
        let flag = arg.strip_prefix("--").or_else(|| arg.strip_prefix('-'));
        let (name, inline) = match flag.map(|f| f.split_once('=').unwrap_or((f, ""))) {
            Some((n, v)) => (n, (!v.is_empty()).then_some(v)),
            None => return Err(format!("unexpected argument {arg:?}")),
        };
        match name {
            "config" => {
                let value = match inline {
                    Some(v) => v.to_string(),
                    None => {
                        i += 1;
                        args.get(i)
                            .cloned()
                            .ok_or("flag needs an argument: -config")?
                    }
                };
                config = PathBuf::from(value);
            }
            "version" | "v" => return Ok(Command::Version),
            "help" | "h" => return Ok(Command::Help),
            other => return Err(format!("flag provided but not defined: -{other}")),
        }
        i += 1;
    }
    Ok(Command::Run(config))
}

fn version_text() -> String {
    let commit = match env!("INFLUX_PROXY_GIT_COMMIT") {
        "" => "unknown",
        c => c,
    };
    format!(
        "Version:    {}\nGit commit: {}\nTarget:     {}",
        influx_proxy::VERSION,
        commit,
        env!("INFLUX_PROXY_TARGET")
    )
}

/// Keeps glibc malloc from holding memory the proxy no longer uses: few
/// arenas (threads mostly reuse their own buffers), and a fixed mmap
/// threshold so a large buffer, once freed, goes back to the system instead
/// of raising the threshold and staying in an arena.
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters; called before any
    // other thread exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1024 * 1024);
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let path = match parse_args(&args) {
        Ok(Command::Run(path)) => path,
        Ok(Command::Version) => {
            println!("{}", version_text());
            return ExitCode::SUCCESS;
        }
        Ok(Command::Help) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("{e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let (cfg, warnings) = match Config::load(&path) {
        Ok(loaded) => loaded,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    // Before any thread exists, so that every thread inherits the mask.
    influx_proxy::signals::block();
    limit_malloc_arenas();
    log!("version: {}", influx_proxy::VERSION);
    if let Err(e) = log::install() {
        log!("{e}");
    }
    for w in &warnings {
        log!("{w}");
    }
    log!(
        "{} circles loaded from file {}",
        cfg.circles.len(),
        path.display()
    );
    log!("hash key: {}, shard key: {}", cfg.hash_key, cfg.shard_key);
    if !cfg.db_list.is_empty() {
        log!("db list: {:?}", cfg.db_list);
    }
    log!(
        "auth: {}, encrypt: {}",
        cfg.auth_enabled(),
        cfg.auth_encrypt
    );
    match influx_proxy::proxy::run(cfg) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log!("{e}");
            ExitCode::FAILURE
        }
    }
}
