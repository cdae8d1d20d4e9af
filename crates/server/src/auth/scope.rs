//! What a request needs and what a token grants: actions on resources, in the registry
//! token format (`repository:<name>:<actions>`, `registry:catalog:*`).

use serde::{Deserialize, Serialize};

/// Actions on a repository. `*` (notary's admin action: delete a repository, rotate a
/// server key, the global changefeed) covers every other action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    Pull,
    Push,
    Delete,
    All,
}

impl Action {
    pub fn parse(s: &str) -> Option<Action> {
        Some(match s {
            "pull" => Action::Pull,
            "push" => Action::Push,
            "delete" => Action::Delete,
            "*" => Action::All,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Action::Pull => "pull",
            Action::Push => "push",
            Action::Delete => "delete",
            Action::All => "*",
        }
    }

    fn bit(self) -> u8 {
        match self {
            Action::Pull => 1,
            Action::Push => 2,
            Action::Delete => 4,
            Action::All => 8,
        }
    }
}

/// A set of actions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Actions(u8);

impl Actions {
    pub const NONE: Actions = Actions(0);

    pub fn of(list: &[Action]) -> Actions {
        Actions(list.iter().fold(0, |acc, a| acc | a.bit()))
    }

    /// From action names; unknown names are ignored.
    pub fn parse_list<'a>(names: impl IntoIterator<Item = &'a str>) -> Actions {
        Actions(
            names
                .into_iter()
                .filter_map(Action::parse)
                .fold(0, |acc, a| acc | a.bit()),
        )
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Whether this set allows `a` (`*` allows everything).
    pub fn allows(self, a: Action) -> bool {
        self.0 & (a.bit() | Action::All.bit()) != 0
    }

    pub fn allows_all(self, other: Actions) -> bool {
        other.iter().all(|a| self.allows(a))
    }

    pub fn union(self, other: Actions) -> Actions {
        Actions(self.0 | other.0)
    }

    /// What of `asked` this set allows (asking `*` needs `*`).
    pub fn grant(self, asked: Actions) -> Actions {
        Actions(
            asked
                .iter()
                .filter(|a| self.allows(*a))
                .fold(0, |acc, a| acc | a.bit()),
        )
    }

    pub fn iter(self) -> impl Iterator<Item = Action> {
        [Action::Pull, Action::Push, Action::Delete, Action::All]
            .into_iter()
            .filter(move |a| self.0 & a.bit() != 0)
    }

    /// `pull,push` (docker's order: pull first).
    pub fn to_list(self) -> String {
        self.iter()
            .map(Action::as_str)
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// The two resource types of the token format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Repository,
    /// `registry:catalog`: the catalog and the global changefeed.
    Registry,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Repository => "repository",
            Kind::Registry => "registry",
        }
    }
}

/// Actions needed (or granted) on one resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Access {
    pub kind: Kind,
    pub name: String,
    pub actions: Actions,
}

impl Access {
    pub fn repository(name: &str, actions: &[Action]) -> Access {
        Access {
            kind: Kind::Repository,
            name: name.to_owned(),
            actions: Actions::of(actions),
        }
    }

    pub fn catalog() -> Access {
        Access {
            kind: Kind::Registry,
            name: "catalog".into(),
            actions: Actions::of(&[Action::All]),
        }
    }

    /// `repository:team/app:pull,push`.
    pub fn scope(&self) -> String {
        format!(
            "{}:{}:{}",
            self.kind.as_str(),
            self.name,
            self.actions.to_list()
        )
    }

    /// Parse one scope. The name may hold colons (`127.0.0.1:4443/team/app`): the type ends
    /// at the first colon, the actions start after the last. A resource class
    /// (`repository(plugin)`) is ignored. `None`: not a scope this server knows.
    pub fn parse_scope(scope: &str) -> Option<Access> {
        let (typ, rest) = scope.split_once(':')?;
        let (name, actions) = rest.rsplit_once(':')?;
        let typ = typ.split('(').next().unwrap_or(typ);
        let kind = match typ {
            "repository" => Kind::Repository,
            "registry" => Kind::Registry,
            _ => return None,
        };
        if name.is_empty() || name.len() > 512 {
            return None;
        }
        Some(Access {
            kind,
            name: name.to_owned(),
            actions: Actions::parse_list(actions.split(',')),
        })
    }
}

/// One entry of a token's `access` claim, as distribution writes and reads it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceActions {
    #[serde(rename = "type")]
    pub typ: String,
    pub name: String,
    #[serde(default)]
    pub actions: Vec<String>,
}

impl From<&Access> for ResourceActions {
    fn from(a: &Access) -> Self {
        ResourceActions {
            typ: a.kind.as_str().into(),
            name: a.name.clone(),
            actions: a.actions.iter().map(|x| x.as_str().to_owned()).collect(),
        }
    }
}

/// Whether a token's `access` claim covers `need`.
pub fn covers(granted: &[ResourceActions], need: &Access) -> bool {
    let have = granted
        .iter()
        .filter(|g| g.typ == need.kind.as_str() && g.name == need.name)
        .fold(Actions::NONE, |acc, g| {
            acc.union(Actions::parse_list(g.actions.iter().map(String::as_str)))
        });
    have.allows_all(need.actions)
}

/// The `scope` of a challenge: each resource once, its actions merged.
pub fn challenge_scope(needs: &[Access]) -> String {
    let mut merged: Vec<Access> = Vec::new();
    for n in needs {
        match merged
            .iter_mut()
            .find(|m| m.kind == n.kind && m.name == n.name)
        {
            Some(m) => m.actions = m.actions.union(n.actions),
            None => merged.push(n.clone()),
        }
    }
    merged
        .iter()
        .map(Access::scope)
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_parse_with_colons_in_names() {
        let a = Access::parse_scope("repository:127.0.0.1:4443/team/app:push,pull").unwrap();
        assert_eq!(a.name, "127.0.0.1:4443/team/app");
        assert_eq!(a.actions, Actions::of(&[Action::Pull, Action::Push]));
        assert_eq!(a.scope(), "repository:127.0.0.1:4443/team/app:pull,push");
        let c = Access::parse_scope("registry:catalog:*").unwrap();
        assert_eq!(c, Access::catalog());
        let p = Access::parse_scope("repository(plugin):team/x:pull").unwrap();
        assert_eq!(p.kind, Kind::Repository);
        assert!(Access::parse_scope("repository:team").is_none());
        assert!(Access::parse_scope("user:x:pull").is_none());
        assert!(Access::parse_scope("repository::pull").is_none());
    }

    #[test]
    fn star_allows_everything_but_asking_star_needs_star() {
        let all = Actions::of(&[Action::All]);
        let rw = Actions::of(&[Action::Pull, Action::Push]);
        assert!(all.allows(Action::Delete));
        assert_eq!(
            rw.grant(Actions::of(&[Action::Pull, Action::All])),
            Actions::of(&[Action::Pull])
        );
        assert_eq!(all.grant(rw), rw);
        assert!(Actions::of(&[Action::Pull])
            .grant(Actions::of(&[Action::Push]))
            .is_empty());
    }

    #[test]
    fn tokens_cover_exact_names_only() {
        let granted = vec![ResourceActions {
            typ: "repository".into(),
            name: "team/app".into(),
            actions: vec!["pull".into()],
        }];
        assert!(covers(
            &granted,
            &Access::repository("team/app", &[Action::Pull])
        ));
        assert!(!covers(
            &granted,
            &Access::repository("team/app", &[Action::Push])
        ));
        assert!(!covers(
            &granted,
            &Access::repository("team/other", &[Action::Pull])
        ));
        assert!(!covers(&granted, &Access::catalog()));
    }
}
