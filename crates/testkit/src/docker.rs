//! Driving the real docker CLI (v28, no daemon) against a test server.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// One docker CLI user: their own `DOCKER_CONFIG` (trust store, TLS dir) and passphrases.
pub struct Docker {
    pub config: PathBuf,
    pub cwd: PathBuf,
    pub server: String,
    pub root_passphrase: String,
    pub repo_passphrase: String,
}

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Docker {
    pub fn new(dir: &Path, server_url: &str) -> Self {
        let config = dir.join("docker-config");
        std::fs::create_dir_all(&config).unwrap();
        Docker {
            config,
            cwd: dir.to_path_buf(),
            server: server_url.to_owned(),
            root_passphrase: "docker-root-pass".into(),
            repo_passphrase: "docker-repo-pass".into(),
        }
    }

    pub fn command(&self, args: &[&str]) -> Command {
        self.command_of(Path::new("docker"), args)
    }

    /// Another program (the `notarium` binary) with this user's docker environment.
    pub fn command_of(&self, program: &Path, args: &[&str]) -> Command {
        let mut c = Command::new(program);
        c.args(args)
            .current_dir(&self.cwd)
            .env("DOCKER_CONFIG", &self.config)
            .env("DOCKER_CONTENT_TRUST_SERVER", &self.server)
            .env(
                "DOCKER_CONTENT_TRUST_ROOT_PASSPHRASE",
                &self.root_passphrase,
            )
            .env(
                "DOCKER_CONTENT_TRUST_REPOSITORY_PASSPHRASE",
                &self.repo_passphrase,
            )
            .env_remove("DOCKER_HOST")
            .env_remove("DOCKER_CONTENT_TRUST");
        c
    }

    /// Run another program (the `notarium` binary) as this user, with `stdin` fed to it.
    pub fn run_program(&self, program: &Path, args: &[&str], stdin: &str) -> Run {
        feed(self.command_of(program, args), stdin)
    }

    /// Run docker with `stdin` fed to it; panics if docker cannot be started at all.
    pub fn run_with_stdin(&self, args: &[&str], stdin: &str) -> Run {
        feed(self.command(args), stdin)
    }

    pub fn run(&self, args: &[&str]) -> Run {
        self.run_with_stdin(args, "")
    }

    /// Run and require success.
    pub fn ok(&self, args: &[&str]) -> Run {
        let r = self.run(args);
        assert_eq!(
            r.code, 0,
            "docker {args:?} failed:\nstdout: {}\nstderr: {}",
            r.stdout, r.stderr
        );
        r
    }

    /// As this user, with `program` (the notarium binary): generate key `name` here, add
    /// it as signer `name` of `repo` (creating the repository when it is new) and sign
    /// `repo:tag`. Each step must succeed; the signer-add run is returned.
    pub fn sign_as(&self, program: &Path, name: &str, repo: &str, tag: &str) -> Run {
        let ok = |args: &[&str]| {
            let r = self.run_program(program, args, "");
            assert_eq!(r.code, 0, "{args:?}: {}{}", r.stdout, r.stderr);
            r
        };
        let public = format!("{name}.pub");
        ok(&["trust", "key", "generate", name, "--dir", "."]);
        let added = ok(&["trust", "signer", "add", "--key", &public, name, repo]);
        ok(&["trust", "sign", &format!("{repo}:{tag}")]);
        added
    }

    pub fn private_dir(&self) -> PathBuf {
        self.config.join("trust/private")
    }

    /// The key file docker stored for a role header (`alice`, `targets`, `root`).
    pub fn key_file_for(&self, role: &str) -> PathBuf {
        for e in std::fs::read_dir(self.private_dir()).unwrap() {
            let p = e.unwrap().path();
            let info = keys::file::inspect(&std::fs::read(&p).unwrap()).unwrap();
            if info.role.as_deref() == Some(role) {
                return p;
            }
        }
        panic!("no {role} key in {}", self.private_dir().display());
    }
}

fn feed(mut c: Command, stdin: &str) -> Run {
    c.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap_or_else(|e| {
        panic!(
            "{} must be installed for this test: {e}",
            c.get_program().to_string_lossy()
        )
    });
    {
        use std::io::Write as _;
        let mut i = child.stdin.take().unwrap();
        let _ = i.write_all(stdin.as_bytes());
    }
    to_run(child.wait_with_output().unwrap())
}

fn to_run(o: Output) -> Run {
    Run {
        code: o.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}
