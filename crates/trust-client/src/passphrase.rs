//! Passphrases as the docker CLI gets them: `DOCKER_CONTENT_TRUST_ROOT_PASSPHRASE` for the
//! root key, `DOCKER_CONTENT_TRUST_REPOSITORY_PASSPHRASE` for every other key, else a
//! prompt (no echo on a terminal; one line per prompt otherwise), with docker's texts.

use std::collections::HashMap;
use std::io::{BufRead, IsTerminal as _, Write};

use zeroize::Zeroizing;

pub const ROOT_ENV: &str = "DOCKER_CONTENT_TRUST_ROOT_PASSPHRASE";
pub const REPOSITORY_ENV: &str = "DOCKER_CONTENT_TRUST_REPOSITORY_PASSPHRASE";

/// Attempts at an existing key's passphrase before giving up (docker: 4 prompts, or 2
/// attempts with an environment variable that is wrong).
pub const PROMPT_ATTEMPTS: usize = 4;
pub const ENV_ATTEMPTS: usize = 2;
/// Prompts for a new passphrase before giving up.
const NEW_ATTEMPTS: usize = 12;
pub const MIN_LENGTH: usize = 8;

pub const ROOT_WARNING: &str =
    "You are about to create a new root signing key passphrase. This passphrase
will be used to protect the most sensitive key in your signing system. Please
choose a long, complex passphrase and be careful to keep the password and the
key file itself secure and backed up. It is highly recommended that you use a
password manager to generate the passphrase and keep it safe. There will be no
way to recover this key. You can find the key in your config directory.
";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PassphraseError {
    #[error("maximum number of passphrase attempts exceeded")]
    TooManyAttempts,
    #[error("no passphrase for the {0} key: set {1} or run on a terminal")]
    Unavailable(String, &'static str),
    #[error("reading the passphrase: {0}")]
    Io(String),
}

/// Where a passphrase came from, which decides how often a wrong one may be retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Env,
    Prompt,
}

/// How a key's alias is shown in prompts: targets, snapshot and default keys are the
/// "repository" key; others by name.
pub fn display_alias(alias: &str) -> &str {
    match alias {
        "targets" | "snapshot" | "default" => "repository",
        a => a,
    }
}

pub struct Passphrases {
    root_env: Option<Zeroizing<String>>,
    repo_env: Option<Zeroizing<String>>,
    cache: HashMap<String, Zeroizing<String>>,
    input: Box<dyn BufRead>,
    output: Box<dyn Write>,
    terminal: bool,
}

impl Passphrases {
    /// From the environment, prompting on stdin/stdout.
    pub fn from_env() -> Self {
        let terminal = std::io::stdin().is_terminal();
        Passphrases {
            root_env: std::env::var(ROOT_ENV).ok().map(Zeroizing::new),
            repo_env: std::env::var(REPOSITORY_ENV).ok().map(Zeroizing::new),
            cache: HashMap::new(),
            input: Box::new(std::io::BufReader::new(std::io::stdin())),
            output: Box::new(std::io::stdout()),
            terminal,
        }
    }

    /// For tests and tools: fixed environment values and scripted input.
    pub fn scripted(root: Option<&str>, repo: Option<&str>, input: &str) -> Self {
        Passphrases {
            root_env: root.map(|s| Zeroizing::new(s.to_owned())),
            repo_env: repo.map(|s| Zeroizing::new(s.to_owned())),
            cache: HashMap::new(),
            input: Box::new(std::io::Cursor::new(input.as_bytes().to_vec())),
            output: Box::new(std::io::sink()),
            terminal: false,
        }
    }

    fn env_for(&self, alias: &str) -> Option<&Zeroizing<String>> {
        if alias == "root" {
            self.root_env.as_ref()
        } else {
            self.repo_env.as_ref()
        }
    }

    fn env_name(alias: &str) -> &'static str {
        if alias == "root" {
            ROOT_ENV
        } else {
            REPOSITORY_ENV
        }
    }

    pub fn say(&mut self, text: &str) {
        let _ = self.output.write_all(text.as_bytes());
        let _ = self.output.flush();
    }

    fn read(&mut self, prompt: &str, alias: &str) -> Result<Zeroizing<String>, PassphraseError> {
        self.say(prompt);
        if self.terminal {
            let p = rpassword::read_password().map_err(|e| PassphraseError::Io(e.to_string()))?;
            return Ok(Zeroizing::new(p));
        }
        let mut line = Zeroizing::new(String::new());
        let n = self
            .input
            .read_line(&mut line)
            .map_err(|e| PassphraseError::Io(e.to_string()))?;
        if n == 0 {
            self.say("\n");
            return Err(PassphraseError::Unavailable(
                display_alias(alias).to_owned(),
                Self::env_name(alias),
            ));
        }
        Ok(Zeroizing::new(
            line.trim_end_matches(['\n', '\r']).to_owned(),
        ))
    }

    /// The passphrase of an existing key, attempt `attempt` (0-based). `None` once the
    /// attempts are used up.
    pub fn existing(
        &mut self,
        alias: &str,
        key_id: &str,
        attempt: usize,
    ) -> Result<(Zeroizing<String>, Source), PassphraseError> {
        if attempt == 0 {
            if let Some(p) = self.cache.get(alias) {
                return Ok((p.clone(), Source::Prompt));
            }
        }
        if let Some(p) = self.env_for(alias) {
            if attempt >= ENV_ATTEMPTS {
                return Err(PassphraseError::TooManyAttempts);
            }
            return Ok((p.clone(), Source::Env));
        }
        if attempt >= PROMPT_ATTEMPTS {
            return Err(PassphraseError::TooManyAttempts);
        }
        if attempt > 0 {
            self.say("Passphrase incorrect. Please retry.\n");
        }
        let prompt = format!(
            "Enter passphrase for {} key with ID {}: ",
            display_alias(alias),
            &key_id[..key_id.len().min(7)]
        );
        let p = self.read(&prompt, alias)?;
        Ok((p, Source::Prompt))
    }

    /// Remember a passphrase that opened a key, for the rest of the command.
    pub fn remember(&mut self, alias: &str, p: &Zeroizing<String>) {
        self.cache.insert(alias.to_owned(), p.clone());
    }

    /// A passphrase for a new key: from the environment, or asked twice on the terminal.
    pub fn new_key(
        &mut self,
        alias: &str,
        key_id: &str,
    ) -> Result<Zeroizing<String>, PassphraseError> {
        if let Some(p) = self.env_for(alias) {
            let p = p.clone();
            self.remember(alias, &p);
            return Ok(p);
        }
        if let Some(p) = self.cache.get(alias) {
            return Ok(p.clone());
        }
        if alias == "root" {
            self.say(ROOT_WARNING);
        }
        let id = &key_id[..key_id.len().min(7)];
        let shown = display_alias(alias).to_owned();
        for _ in 0..NEW_ATTEMPTS / 2 {
            let p = self.read(
                &format!("Enter passphrase for new {shown} key with ID {id}: "),
                alias,
            )?;
            if p.chars().count() < MIN_LENGTH {
                self.say("Passphrase is too short. Please use a password manager to generate and store a good random passphrase.\n");
                continue;
            }
            let again = self.read(
                &format!("Repeat passphrase for new {shown} key with ID {id}: "),
                alias,
            )?;
            if *again != *p {
                self.say("Passphrases do not match. Please retry.\n");
                continue;
            }
            self.remember(alias, &p);
            return Ok(p);
        }
        Err(PassphraseError::TooManyAttempts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environment_first_then_prompts() {
        let mut p = Passphrases::scripted(
            Some("rootpass1"),
            None,
            "short\nlongenough1\nlongenough1\nwrongpass\nrightpass\n",
        );
        assert_eq!(
            p.new_key("root", "abcdef0123").unwrap().as_str(),
            "rootpass1"
        );
        // A new repository key: too short, then the same twice.
        assert_eq!(
            p.new_key("targets", "0123456789").unwrap().as_str(),
            "longenough1"
        );
        // Existing key, prompted: first attempt from the cache of this command.
        assert_eq!(
            p.existing("targets", "0123456789", 0).unwrap().0.as_str(),
            "longenough1"
        );
        let (a, s) = p.existing("alice", "0123456789", 1).unwrap();
        assert_eq!((a.as_str(), s), ("wrongpass", Source::Prompt));
        assert_eq!(
            p.existing("alice", "0123456789", 2).unwrap().0.as_str(),
            "rightpass"
        );
        assert!(matches!(
            p.existing("alice", "0123456789", 4),
            Err(PassphraseError::TooManyAttempts)
        ));
        // With an environment variable, a wrong value is tried twice.
        let mut p = Passphrases::scripted(None, Some("envpass99"), "");
        assert_eq!(p.existing("alice", "x", 1).unwrap().1, Source::Env);
        assert!(matches!(
            p.existing("alice", "x", 2),
            Err(PassphraseError::TooManyAttempts)
        ));
        // No environment, no input: a clear error naming the variable.
        let mut p = Passphrases::scripted(None, None, "");
        let e = p.existing("root", "abcdef0", 0).unwrap_err();
        assert!(e.to_string().contains(ROOT_ENV), "{e}");
    }

    #[test]
    fn aliases_as_docker_shows_them() {
        assert_eq!(display_alias("targets"), "repository");
        assert_eq!(display_alias("snapshot"), "repository");
        assert_eq!(display_alias("alice"), "alice");
        assert_eq!(display_alias("root"), "root");
    }
}
