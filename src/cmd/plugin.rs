//! The docker CLI plugin: the same binary, installed as `docker-trust` in a cli-plugins
//! directory, answers the plugin protocol. docker runs `docker-trust
//! docker-cli-plugin-metadata` to list it, and `docker-trust [GLOBAL FLAGS] trust ARGS…`
//! (its own argument list, global flags included) to run it; this runs `notarium trust
//! ARGS…` with docker's configuration (`--config`, `DOCKER_CONFIG`, `DOCKER_CONTENT_TRUST_*`)
//! and engine (`-H`/`--host`, `DOCKER_HOST`).
//!
//! docker 28 still has its own `trust` command, which shadows the plugin (`docker info`
//! lists it as invalid: it "duplicates builtin command"); docker 29 removed it, and then
//! `docker trust …` runs this.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// The executable name docker looks for (`docker-<command>`).
pub const PLUGIN_FILE: &str = "docker-trust";

/// Where `install-docker-plugin --system` puts it (docker's first system plugin directory).
pub const SYSTEM_DIR: &str = "/usr/local/lib/docker/cli-plugins";

/// Whether this process was started under the plugin's name.
pub fn invoked_as_plugin(argv0: &OsString) -> bool {
    Path::new(argv0)
        .file_name()
        .is_some_and(|n| n == PLUGIN_FILE)
}

/// The metadata docker reads (`SchemaVersion` 0.1.0).
pub fn metadata() -> String {
    serde_json::json!({
        "SchemaVersion": "0.1.0",
        "Vendor": "notarium",
        "Version": env!("CARGO_PKG_VERSION"),
        "ShortDescription": "Docker Content Trust: sign, inspect, revoke; trusted push and pull",
    })
    .to_string()
}

/// What a plugin invocation asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum Call {
    Metadata,
    /// `notarium trust ARGS…` (the program name first), with the environment docker's
    /// global flags set.
    Trust {
        args: Vec<OsString>,
        env: Vec<(&'static str, OsString)>,
    },
}

/// docker's global flags that take a value, and the environment they stand for (`None`:
/// read and dropped).
const VALUE_FLAGS: [(&str, Option<&str>); 10] = [
    ("--config", Some("DOCKER_CONFIG")),
    ("-c", Some("DOCKER_CONTEXT")),
    ("--context", Some("DOCKER_CONTEXT")),
    ("-H", Some("DOCKER_HOST")),
    ("--host", Some("DOCKER_HOST")),
    ("-l", None),
    ("--log-level", None),
    ("--tlscacert", None),
    ("--tlscert", None),
    ("--tlskey", None),
];
const BOOL_FLAGS: [&str; 4] = ["-D", "--debug", "--tls", "--tlsverify"];

/// Read docker's plugin invocation (`args` without the program name).
pub fn parse(args: &[OsString]) -> Result<Call, String> {
    let mut env = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let a = args[i].to_string_lossy().into_owned();
        if a == "docker-cli-plugin-metadata" {
            return Ok(Call::Metadata);
        }
        if a == "trust" {
            let mut out = vec![OsString::from("notarium"), OsString::from("trust")];
            out.extend(args[i + 1..].iter().cloned());
            return Ok(Call::Trust { args: out, env });
        }
        let (name, inline) = match a.split_once('=') {
            Some((n, v)) if n.starts_with('-') => (n.to_owned(), Some(v.to_owned())),
            _ => (a.clone(), None),
        };
        if let Some((_, var)) = VALUE_FLAGS.iter().find(|(f, _)| *f == name) {
            let value = match inline {
                Some(v) => OsString::from(v),
                None => {
                    i += 1;
                    args.get(i)
                        .cloned()
                        .ok_or_else(|| format!("flag needs an argument: {name}"))?
                }
            };
            if let Some(var) = var {
                env.push((*var, value));
            }
        } else if BOOL_FLAGS.contains(&name.as_str()) {
            if name == "--tlsverify" {
                env.push(("DOCKER_TLS_VERIFY", OsString::from("1")));
            }
        } else {
            return Err(format!(
                "docker-trust: unexpected {a:?}: this is a docker CLI plugin; run it as `docker trust …`, or run `notarium trust …`"
            ));
        }
        i += 1;
    }
    Err("docker-trust: no command: this is a docker CLI plugin; run it as `docker trust …`".into())
}

/// The directory a user's plugins live in: `<config>/cli-plugins` (`<config>` =
/// `DOCKER_CONFIG` or `~/.docker`).
pub fn user_dir() -> Result<PathBuf, String> {
    if let Some(d) = std::env::var_os("DOCKER_CONFIG").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(d).join("cli-plugins"));
    }
    let home = std::env::var_os("HOME").ok_or("HOME is not set")?;
    Ok(PathBuf::from(home).join(".docker").join("cli-plugins"))
}

/// `notarium install-docker-plugin [--system]`: `docker-trust` in the plugin directory, a
/// symbolic link to this binary (a file already there that is not such a link is left
/// alone, and said).
pub fn install(system: bool) -> Result<PathBuf, String> {
    let dir = if system {
        PathBuf::from(SYSTEM_DIR)
    } else {
        user_dir()?
    };
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let exe = std::env::current_exe()
        .and_then(|p| p.canonicalize())
        .map_err(|e| format!("this binary's path: {e}"))?;
    let link = dir.join(PLUGIN_FILE);
    match std::fs::symlink_metadata(&link) {
        Ok(m) if m.file_type().is_symlink() => {
            std::fs::remove_file(&link).map_err(|e| format!("{}: {e}", link.display()))?
        }
        Ok(_) => {
            return Err(format!(
                "{} exists and is not a link to notarium; remove it first",
                link.display()
            ))
        }
        Err(_) => {}
    }
    std::os::unix::fs::symlink(&exe, &link).map_err(|e| format!("{}: {e}", link.display()))?;
    Ok(link)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    #[test]
    fn docker_s_global_flags_become_its_environment() {
        assert_eq!(
            parse(&os(&["docker-cli-plugin-metadata"])).unwrap(),
            Call::Metadata
        );
        let call = parse(&os(&[
            "--config",
            "/c",
            "-H=unix:///d.sock",
            "-D",
            "--tlsverify",
            "-l",
            "debug",
            "trust",
            "inspect",
            "--pretty",
            "r/a",
        ]))
        .unwrap();
        assert_eq!(
            call,
            Call::Trust {
                args: os(&["notarium", "trust", "inspect", "--pretty", "r/a"]),
                env: vec![
                    ("DOCKER_CONFIG", "/c".into()),
                    ("DOCKER_HOST", "unix:///d.sock".into()),
                    ("DOCKER_TLS_VERIFY", "1".into()),
                ],
            }
        );
        // Flags after `trust` are the command's own.
        let Call::Trust { args, env } = parse(&os(&["trust", "--config", "x"])).unwrap() else {
            panic!()
        };
        assert_eq!((args.len(), env.len()), (4, 0));
        assert!(parse(&os(&["--bogus", "trust"])).is_err());
        assert!(parse(&os(&["--config"])).is_err());
        assert!(parse(&os(&[])).is_err());
    }
}
