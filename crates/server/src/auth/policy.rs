//! Who may do what: `[[auth.access]]` rules of users, repository patterns and actions.
//!
//! * A rule names users (`alice`), `"*"` (any authenticated user) or `"anonymous"`.
//! * Patterns are globs on the repository name: `*` within a path segment, `**` across
//!   segments. For a request, the rules whose user and pattern match are compared and the
//!   most specific pattern wins (more literal characters; then fewer `**`; then fewer
//!   `*`); rules as specific as the winner add up. No matching rule: nothing is allowed.
//! * What anonymous users may do, every authenticated user may do too (logging in never
//!   takes a right away).
//! * The catalog (`registry:catalog:*`: `_catalog`, the global changefeed) is for users a
//!   rule gives `*` on `**`.

use super::scope::{Action, Actions};
pub use registry::pattern::Pattern;

/// Who a rule is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Who {
    User(String),
    /// `"*"`: any authenticated user.
    Authenticated,
    /// `"anonymous"`: requests without credentials (and so everyone).
    Anonymous,
}

#[derive(Debug, Clone)]
pub struct Rule {
    pub who: Vec<Who>,
    pub patterns: Vec<Pattern>,
    pub actions: Actions,
}

/// One `[[auth.access]]` table as written in the config.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    pub users: Vec<String>,
    pub repositories: Vec<String>,
    pub actions: Vec<String>,
}

impl Rule {
    pub fn from_config(c: &RuleConfig) -> Result<Rule, String> {
        if c.users.is_empty() || c.repositories.is_empty() {
            return Err("an [[auth.access]] rule needs users and repositories".into());
        }
        let who = c
            .users
            .iter()
            .map(|u| match u.as_str() {
                "*" => Ok(Who::Authenticated),
                "anonymous" => Ok(Who::Anonymous),
                name => super::htpasswd::check_user_name(name).map(|()| Who::User(name.into())),
            })
            .collect::<Result<_, _>>()?;
        let patterns = c
            .repositories
            .iter()
            .map(|p| Pattern::new(p))
            .collect::<Result<_, _>>()?;
        let mut actions = Actions::NONE;
        for a in &c.actions {
            let parsed = Action::parse(a)
                .ok_or_else(|| format!("action {a:?}: expected pull, push, delete or \"*\""))?;
            actions = actions.union(Actions::of(&[parsed]));
        }
        Ok(Rule {
            who,
            patterns,
            actions,
        })
    }
}

#[derive(Debug, Clone, Default)]
pub struct Policy {
    rules: Vec<Rule>,
}

impl Policy {
    pub fn new(rules: Vec<Rule>) -> Policy {
        Policy { rules }
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// What `user` (`None`: anonymous) may do on repository `name`.
    pub fn rights(&self, user: Option<&str>, name: &str) -> Actions {
        let anonymous = self.best(name, |w| *w == Who::Anonymous);
        match user {
            None => anonymous,
            Some(u) => self
                .best(name, |w| match w {
                    Who::User(n) => n == u,
                    Who::Authenticated => true,
                    Who::Anonymous => false,
                })
                .union(anonymous),
        }
    }

    fn best(&self, name: &str, who: impl Fn(&Who) -> bool) -> Actions {
        let mut best: Option<((usize, isize, isize), Actions)> = None;
        for rule in self.rules.iter().filter(|r| r.who.iter().any(&who)) {
            for p in rule.patterns.iter().filter(|p| p.matches(name)) {
                best = match best {
                    Some((s, a)) if s == p.specificity() => Some((s, a.union(rule.actions))),
                    Some((s, a)) if s > p.specificity() => Some((s, a)),
                    _ => Some((p.specificity(), rule.actions)),
                };
            }
        }
        best.map_or(Actions::NONE, |(_, a)| a)
    }

    /// Whether `user` may list the catalog and read the global changefeed.
    pub fn catalog(&self, user: Option<&str>) -> bool {
        let Some(u) = user else { return false };
        self.rules.iter().any(|r| {
            r.actions.allows(Action::All)
                && r.patterns.iter().any(|p| p.as_str() == "**")
                && r.who.iter().any(|w| match w {
                    Who::User(n) => n == u,
                    Who::Authenticated => true,
                    Who::Anonymous => false,
                })
        })
    }
}

/// The names this server is reached by (`host:port`), to take off the front of a GUN:
/// trust data for `127.0.0.1:4443/team/app` is the repository `team/app` here.
#[derive(Debug, Clone, Default)]
pub struct OwnHosts(Vec<String>);

impl OwnHosts {
    /// From the address the server listens on and the names it is known by (`tls_san`,
    /// `[auth] hosts`; with or without a port: without one, the listening port is meant,
    /// and on port 443 the bare name too).
    pub fn new(listen: std::net::SocketAddr, names: &[String]) -> OwnHosts {
        let port = listen.port();
        let mut hosts = Vec::new();
        let ip = listen.ip();
        let fmt_ip = |ip: std::net::IpAddr| match ip {
            std::net::IpAddr::V6(v6) => format!("[{v6}]"),
            v4 => v4.to_string(),
        };
        if ip.is_loopback() || ip.is_unspecified() {
            for h in ["127.0.0.1", "localhost", "[::1]"] {
                hosts.push(format!("{h}:{port}"));
            }
        }
        if !ip.is_unspecified() {
            hosts.push(format!("{}:{port}", fmt_ip(ip)));
        }
        for n in names {
            let n = n.to_ascii_lowercase();
            let has_port = n.rsplit_once(':').is_some_and(|(h, p)| {
                !h.is_empty() && (!h.contains(':') || h.ends_with(']')) && p.parse::<u16>().is_ok()
            });
            if has_port {
                hosts.push(n);
            } else {
                let host = match n.parse::<std::net::IpAddr>() {
                    Ok(ip) => fmt_ip(ip),
                    Err(_) => n,
                };
                hosts.push(format!("{host}:{port}"));
                if port == 443 {
                    hosts.push(host);
                }
            }
        }
        hosts.sort();
        hosts.dedup();
        OwnHosts(hosts)
    }

    pub fn names(&self) -> &[String] {
        &self.0
    }

    /// The repository a GUN names here: without this server's host, else the GUN whole.
    pub fn repository<'a>(&self, gun: &'a str) -> &'a str {
        if let Some((host, rest)) = gun.split_once('/') {
            if self.0.iter().any(|h| h.eq_ignore_ascii_case(host)) {
                return rest;
            }
        }
        gun
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(users: &[&str], repos: &[&str], actions: &[&str]) -> Rule {
        Rule::from_config(&RuleConfig {
            users: users.iter().map(|s| s.to_string()).collect(),
            repositories: repos.iter().map(|s| s.to_string()).collect(),
            actions: actions.iter().map(|s| s.to_string()).collect(),
        })
        .unwrap()
    }

    #[test]
    fn globs() {
        let p = |s: &str| Pattern::new(s).unwrap();
        assert!(p("team/*").matches("team/app"));
        assert!(!p("team/*").matches("team/a/b"));
        assert!(p("team/**").matches("team/a/b"));
        assert!(!p("team/**").matches("team"));
        assert!(!p("team/**").matches("teamx/a"));
        assert!(p("**").matches("a/b/c"));
        assert!(p("*/app").matches("x/app"));
        assert!(!p("*/app").matches("x/y/app"));
        assert!(p("a*c").matches("abbbc"));
        assert!(p("team/app").matches("team/app"));
        assert!(!p("team/app").matches("team/app2"));
        // No blow-up on hostile names.
        assert!(!p("*a*a*a*a*a*a*a*a*b").matches(&"a".repeat(250)));
        assert!(Pattern::new("").is_err());
        assert!(Pattern::new("a b").is_err());
        assert!(Pattern::new("a/***").is_err());
    }

    #[test]
    fn most_specific_pattern_wins_and_ties_add_up() {
        let policy = Policy::new(vec![
            rule(&["*"], &["**"], &["pull"]),
            rule(&["alice"], &["team/**"], &["push", "pull"]),
            rule(&["*"], &["team/secret"], &[]),
            rule(&["bob"], &["team/**"], &["pull"]),
            rule(&["bob"], &["team/**"], &["delete"]),
            rule(&["anonymous"], &["public/**"], &["pull"]),
            rule(&["admin"], &["**"], &["*"]),
        ]);
        let pull = Actions::of(&[Action::Pull]);
        assert_eq!(
            policy.rights(Some("alice"), "team/app"),
            Actions::of(&[Action::Pull, Action::Push])
        );
        assert_eq!(policy.rights(Some("alice"), "other/app"), pull);
        // A more specific rule takes rights away (but not what anonymous users have).
        assert_eq!(policy.rights(Some("alice"), "team/secret"), Actions::NONE);
        assert_eq!(
            policy.rights(Some("bob"), "team/app"),
            Actions::of(&[Action::Pull, Action::Delete])
        );
        assert_eq!(policy.rights(None, "team/app"), Actions::NONE);
        assert_eq!(policy.rights(None, "public/x"), pull);
        assert_eq!(policy.rights(Some("carol"), "public/x"), pull);
        assert!(policy
            .rights(Some("admin"), "public/x")
            .allows(Action::Delete));
        assert!(policy.catalog(Some("admin")));
        assert!(!policy.catalog(Some("alice")));
        assert!(!policy.catalog(None));
        assert_eq!(Policy::default().rights(Some("x"), "a"), Actions::NONE);
    }

    #[test]
    fn own_hosts_come_off_the_gun() {
        let h = OwnHosts::new(
            "127.0.0.1:4443".parse().unwrap(),
            &["registry.example.com".into(), "r2:5000".into()],
        );
        assert_eq!(h.repository("127.0.0.1:4443/team/app"), "team/app");
        assert_eq!(h.repository("localhost:4443/team/app"), "team/app");
        assert_eq!(
            h.repository("registry.example.com:4443/team/app"),
            "team/app"
        );
        assert_eq!(h.repository("r2:5000/a"), "a");
        assert_eq!(
            h.repository("registry.example.com/team/app"),
            "registry.example.com/team/app"
        );
        assert_eq!(
            h.repository("127.0.0.1:5000/team/app"),
            "127.0.0.1:5000/team/app"
        );
        assert_eq!(h.repository("team/app"), "team/app");
        let tls = OwnHosts::new("0.0.0.0:443".parse().unwrap(), &["r.example".into()]);
        assert_eq!(tls.repository("r.example/a/b"), "a/b");
        assert_eq!(tls.repository("r.example:443/a/b"), "a/b");
    }
}
