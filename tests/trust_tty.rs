//! Passphrase prompts on a terminal: the same conversation (too short, mismatched repeat,
//! wrong passphrase, the root-key warning) with the docker CLI and with notarium, each in a
//! pseudo-terminal, gives the same transcript (key IDs aside).

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::Command;

use notarium_testkit::docker::Docker;
use notarium_testkit::TestServer;

enum Step<'a> {
    /// Wait for this text.
    Expect(&'a str),
    /// Wait for a prompt's short key ID and its `: `.
    KeyId,
    /// Type a line.
    Type(&'a str),
}
use Step::{Expect, KeyId, Type};

/// Run `program args` in a pseudo-terminal as `user`, without passphrase variables, follow
/// the conversation, and return everything it printed (IDs masked, `\r\n` as `\n`).
fn converse(user: &Docker, program: &Path, args: &[&str], steps: &[Step<'_>]) -> String {
    let mut c: Command = user.command_of(program, args);
    c.env_remove("DOCKER_CONTENT_TRUST_ROOT_PASSPHRASE")
        .env_remove("DOCKER_CONTENT_TRUST_REPOSITORY_PASSPHRASE");
    let mut p = rexpect::session::spawn_command(c, Some(30_000)).unwrap();
    let mut transcript = String::new();
    for s in steps {
        match s {
            Expect(text) => {
                let before = p.exp_string(text).unwrap_or_else(|e| {
                    panic!("{program:?} {args:?}: waiting for {text:?}: {e}\nso far: {transcript}")
                });
                transcript.push_str(&before);
                transcript.push_str(text);
            }
            KeyId => {
                let (before, _) = p.exp_regex("with ID [0-9a-f]{7}: ").unwrap_or_else(|e| {
                    panic!("{program:?} {args:?}: waiting for a prompt: {e}\nso far: {transcript}")
                });
                transcript.push_str(&before);
                transcript.push_str("with ID XXXXXXX: ");
            }
            Type(line) => {
                p.send_line(line).unwrap();
            }
        }
    }
    transcript.push_str(&p.exp_eof().unwrap());
    let status = p.process.wait().unwrap();
    assert!(
        matches!(status, rexpect::process::wait::WaitStatus::Exited(_, 0)),
        "{program:?} {args:?}: {status:?}\n{transcript}"
    );
    transcript.replace("\r\n", "\n")
}

const TOO_SHORT: &str = "Passphrase is too short. Please use a password manager to generate and store a good random passphrase.";

#[test]
fn prompts_match_docker_on_a_terminal() {
    let server = TestServer::start();
    let tmp = tempfile::tempdir().unwrap();
    let notarium = Path::new(env!("CARGO_BIN_EXE_notarium"));
    let docker = Path::new("docker");
    let mut transcripts = Vec::new();
    for (tool, program) in [("docker", docker), ("notarium", notarium)] {
        let dir = tmp.path().join(tool);
        std::fs::create_dir_all(&dir).unwrap();
        let user = Docker::new(&dir, &server.url);
        server.install_ca_for_docker(&user.config);
        let gun = format!("registry.example.com/tty/{tool}");
        let mut t = String::new();

        // A new signer key: too short, then a repeat that does not match, then right.
        t += &converse(
            &user,
            program,
            &["trust", "key", "generate", "alice", "--dir", "."],
            &[
                Expect("Enter passphrase for new alice key "),
                KeyId,
                Type("short"),
                Expect(TOO_SHORT),
                Expect("Enter passphrase for new alice key "),
                KeyId,
                Type("alice-passphrase"),
                Expect("Repeat passphrase for new alice key "),
                KeyId,
                Type("not-the-same-passphrase"),
                Expect("Passphrases do not match. Please retry."),
                Expect("Enter passphrase for new alice key "),
                KeyId,
                Type("alice-passphrase"),
                Expect("Repeat passphrase for new alice key "),
                KeyId,
                Type("alice-passphrase"),
                Expect("Corresponding public key available: alice.pub"),
            ],
        );
        // The key really is under that passphrase.
        let f = std::fs::read_dir(user.private_dir())
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path();
        keys::file::read(&std::fs::read(&f).unwrap(), Some("alice-passphrase")).unwrap();

        // A new repository: the root warning, a new root key and a new repository key.
        t += &converse(
            &user,
            program,
            &[
                "trust",
                "signer",
                "add",
                "--key",
                "alice.pub",
                "alice",
                &gun,
            ],
            &[
                Expect("You can find the key in your config directory."),
                Expect("Enter passphrase for new root key "),
                KeyId,
                Type("root-passphrase"),
                Expect("Repeat passphrase for new root key "),
                KeyId,
                Type("root-passphrase"),
                Expect("Enter passphrase for new repository key "),
                KeyId,
                Type("repository-passphrase"),
                Expect("Repeat passphrase for new repository key "),
                KeyId,
                Type("repository-passphrase"),
                Expect("Successfully added signer"),
            ],
        );
        // An existing key: a wrong passphrase, then the right one.
        t += &converse(
            &user,
            program,
            &["trust", "signer", "add", "--key", "alice.pub", "bob", &gun],
            &[
                Expect("Enter passphrase for repository key "),
                KeyId,
                Type("wrong-passphrase"),
                Expect("Passphrase incorrect. Please retry."),
                Expect("Enter passphrase for repository key "),
                KeyId,
                Type("repository-passphrase"),
                Expect("Successfully added signer"),
            ],
        );
        transcripts.push(t.replace(&gun, "GUN"));
    }
    assert!(
        transcripts[0].contains("You are about to create a new root signing key passphrase."),
        "{}",
        transcripts[0]
    );
    assert_eq!(
        transcripts[1], transcripts[0],
        "notarium's terminal conversation differs from docker's"
    );
}
