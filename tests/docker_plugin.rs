//! The docker CLI plugin: `notarium install-docker-plugin` links the binary as
//! `<config>/cli-plugins/docker-trust`; docker lists it through its metadata (docker 28
//! marks it shadowed by its own `trust` command); invoked as docker invokes a plugin
//! (`docker-trust [GLOBAL FLAGS] trust ARGS…`) it answers as `docker trust` does, word for
//! word.

#![allow(clippy::unwrap_used)]

use std::path::Path;

use notarium_testkit::registry::{push_image, Distribution};
use notarium_testkit::TestServer;

const BIN: &str = env!("CARGO_BIN_EXE_notarium");

#[test]
fn the_plugin_installs_lists_and_answers_as_docker_trust_does() {
    let tmp = tempfile::tempdir().unwrap();
    let server = TestServer::start();
    let registry = Distribution::start();
    let alice = server.user(tmp.path(), "alice");
    let repo = format!("{}/plugin/app", registry.addr);
    push_image(&registry.url(), "plugin/app", "v1", "v1");
    alice.sign_as(Path::new(BIN), "alice", &repo, "v1");

    // Installed: a link to this binary in the user's plugin directory.
    let r = alice.run_program(Path::new(BIN), &["install-docker-plugin"], "");
    assert_eq!(r.code, 0, "{}", r.stderr);
    let plugin = alice.config.join("cli-plugins/docker-trust");
    assert_eq!(
        r.stdout,
        format!(
            "Installed {} (docker trust … runs notarium)\n",
            plugin.display()
        )
    );
    assert!(std::fs::symlink_metadata(&plugin)
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(
        std::fs::canonicalize(&plugin).unwrap(),
        std::fs::canonicalize(BIN).unwrap()
    );
    // Again: the link is replaced, not refused.
    assert_eq!(
        alice
            .run_program(Path::new(BIN), &["install-docker-plugin"], "")
            .code,
        0
    );

    // The metadata docker asks for.
    let r = alice.run_program(&plugin, &["docker-cli-plugin-metadata"], "");
    assert_eq!(r.code, 0, "{}", r.stderr);
    let m: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(m["SchemaVersion"], "0.1.0");
    assert_eq!(m["Vendor"], "notarium");
    assert_eq!(m["Version"], env!("CARGO_PKG_VERSION"));
    assert!(m["ShortDescription"]
        .as_str()
        .unwrap()
        .contains("Content Trust"));

    // docker 28 finds it, and says its own `trust` command wins.
    let mut info = alice.command(&["info"]);
    info.env(
        "DOCKER_HOST",
        format!("unix://{}/no-engine.sock", tmp.path().display()),
    );
    let o = info.output().unwrap();
    let out = String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr);
    assert!(
        out.contains(&format!(
            "WARNING: Plugin \"{}\" is not valid: plugin \"trust\" duplicates builtin command",
            plugin.display()
        )),
        "{out}"
    );

    // Invoked as docker invokes a plugin (its global flags first, the configuration
    // given by --config only): the same output as docker's own command.
    let docker = alice.ok(&["trust", "inspect", "--pretty", &repo]);
    let config = alice.config.to_str().unwrap().to_owned();
    let mut c = alice.command_of(
        &plugin,
        &["--config", &config, "trust", "inspect", "--pretty", &repo],
    );
    c.env_remove("DOCKER_CONFIG");
    let o = c.output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(String::from_utf8(o.stdout).unwrap(), docker.stdout);
    let docker = alice.ok(&["trust", "inspect", &repo]);
    let r = alice.run_program(&plugin, &["trust", "inspect", &repo], "");
    assert_eq!((r.code, r.stdout), (0, docker.stdout));
    // Anything but docker's protocol is refused with a pointer to the right command.
    let r = alice.run_program(&plugin, &["inspect", &repo], "");
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("docker CLI plugin"), "{}", r.stderr);
}
