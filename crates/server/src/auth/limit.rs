//! Failed logins, counted per user name and per client address in fixed windows. Past the
//! limit every login for that user (or from that address) is refused with 429 until the
//! window ends, even with the right password, so guessing gains nothing. Both tables are
//! bounded (least recently used names are forgotten first).

use std::net::IpAddr;

#[derive(Debug, Clone, Copy)]
struct Window {
    start: i64,
    failures: u32,
}

pub struct LoginLimiter {
    users: quick_cache::sync::Cache<String, Window>,
    addrs: quick_cache::sync::Cache<IpAddr, Window>,
    per_user: u32,
    per_addr: u32,
    window: i64,
}

/// How many names and addresses are tracked at most.
const TRACKED: usize = 100_000;

impl LoginLimiter {
    pub fn new(per_user: u32, per_addr: u32, window_secs: u64) -> LoginLimiter {
        LoginLimiter {
            users: quick_cache::sync::Cache::new(TRACKED),
            addrs: quick_cache::sync::Cache::new(TRACKED),
            per_user: per_user.max(1),
            per_addr: per_addr.max(1),
            window: window_secs.clamp(1, 86_400) as i64,
        }
    }

    fn wait(&self, w: Option<Window>, limit: u32, now: i64) -> Option<u64> {
        let w = w?;
        let end = w.start + self.window;
        (w.failures >= limit && now < end).then(|| (end - now).max(1) as u64)
    }

    /// Seconds to wait before `user` may try again from `addr`, if they must.
    pub fn blocked(&self, user: Option<&str>, addr: Option<IpAddr>, now: i64) -> Option<u64> {
        let u = user.and_then(|u| self.wait(self.users.get(u), self.per_user, now));
        let a = addr.and_then(|a| self.wait(self.addrs.get(&a), self.per_addr, now));
        u.max(a)
    }

    fn bump(w: Option<Window>, now: i64, window: i64) -> Window {
        match w {
            Some(w) if now < w.start + window => Window {
                start: w.start,
                failures: w.failures.saturating_add(1),
            },
            _ => Window {
                start: now,
                failures: 1,
            },
        }
    }

    pub fn failed(&self, user: Option<&str>, addr: Option<IpAddr>, now: i64) {
        if let Some(u) = user {
            let w = Self::bump(self.users.get(u), now, self.window);
            self.users.insert(u.chars().take(255).collect(), w);
        }
        if let Some(a) = addr {
            let w = Self::bump(self.addrs.get(&a), now, self.window);
            self.addrs.insert(a, w);
        }
    }

    /// A good login clears the user's count (not the address's).
    pub fn succeeded(&self, user: &str) {
        self.users.remove(user);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_per_user_and_per_address() {
        let l = LoginLimiter::new(3, 5, 60);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        for _ in 0..3 {
            assert_eq!(l.blocked(Some("alice"), Some(a), 100), None);
            l.failed(Some("alice"), Some(a), 100);
        }
        assert_eq!(l.blocked(Some("alice"), Some(b), 110), Some(50));
        assert_eq!(l.blocked(Some("bob"), Some(b), 110), None);
        assert_eq!(
            l.blocked(Some("alice"), Some(b), 160),
            None,
            "the window ended"
        );
        // Many names from one address.
        for n in 0..2 {
            l.failed(Some(&format!("u{n}")), Some(a), 100);
        }
        assert_eq!(l.blocked(Some("carol"), Some(a), 101), Some(59));
        l.succeeded("alice");
        assert_eq!(l.blocked(Some("alice"), Some(b), 101), None);
    }
}
