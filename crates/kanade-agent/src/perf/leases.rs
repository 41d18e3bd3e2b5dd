//! Who is watching this agent's performance, and until when: the pure decision behind "live only while watched".
//! A viewer's lease is renewed by asking again; with none alive, the agent stops sampling at the live rate.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use kanade_shared::perf::{MAX_LEASE, MAX_VIEWER_CHARS, MAX_VIEWERS};

/// The leases alive, by viewer.
#[derive(Debug, Default)]
pub struct Leases {
    until: HashMap<String, Instant>,
}

/// What a request did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Grant {
    /// The viewer holds a lease for this long from now.
    Granted { lease: Duration },
    /// The viewer gave its lease up (or had none).
    Released,
    /// Refused, with the reason in words.
    Refused(String),
}

impl Leases {
    /// Grants, renews or (with a zero `lease`) releases `viewer`'s lease. A lease is cut to [`MAX_LEASE`]; a new
    /// viewer beyond [`MAX_VIEWERS`] is refused, as is a name that is empty, too long or holds control characters.
    pub fn request(&mut self, viewer: &str, lease: Duration, now: Instant) -> Grant {
        if viewer.is_empty() || viewer.chars().count() > MAX_VIEWER_CHARS || viewer.chars().any(char::is_control) {
            return Grant::Refused(format!("a viewer is 1 to {MAX_VIEWER_CHARS} printable characters"));
        }
        self.prune(now);
        if lease.is_zero() {
            self.until.remove(viewer);
            return Grant::Released;
        }
        if !self.until.contains_key(viewer) && self.until.len() >= MAX_VIEWERS {
            return Grant::Refused(format!("{MAX_VIEWERS} viewers already watch this agent"));
        }
        let lease = lease.min(MAX_LEASE);
        self.until.insert(viewer.to_owned(), now + lease);
        Grant::Granted { lease }
    }

    /// Forgets the leases that ended.
    pub fn prune(&mut self, now: Instant) {
        self.until.retain(|_, until| *until > now);
    }

    /// Viewers holding a lease at `now`.
    pub fn viewers(&self, now: Instant) -> usize {
        self.until.values().filter(|until| **until > now).count()
    }

    /// When the last lease alive at `now` ends; `None` when none is.
    pub fn live_until(&self, now: Instant) -> Option<Instant> {
        self.until.values().copied().filter(|until| *until > now).max()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    #[test]
    fn the_stream_lives_while_any_lease_does() {
        let start = Instant::now();
        let mut leases = Leases::default();
        assert_eq!(leases.live_until(start), None, "nobody watches");
        assert_eq!(leases.request("backend-a", 30 * SECOND, start), Grant::Granted { lease: 30 * SECOND });
        assert_eq!(leases.request("backend-b", 10 * SECOND, start), Grant::Granted { lease: 10 * SECOND });
        assert_eq!(leases.viewers(start), 2);
        assert_eq!(leases.live_until(start), Some(start + 30 * SECOND));
        // Renewing extends only the renewing viewer's lease.
        assert_eq!(
            leases.request("backend-b", 30 * SECOND, start + 20 * SECOND),
            Grant::Granted { lease: 30 * SECOND }
        );
        assert_eq!(leases.viewers(start + 31 * SECOND), 1);
        assert_eq!(leases.live_until(start + 31 * SECOND), Some(start + 50 * SECOND));
        assert_eq!(leases.live_until(start + 50 * SECOND), None, "lapsed");
    }

    #[test]
    fn a_viewer_can_give_its_lease_up() {
        let now = Instant::now();
        let mut leases = Leases::default();
        leases.request("v", 30 * SECOND, now);
        assert_eq!(leases.request("v", Duration::ZERO, now), Grant::Released);
        assert_eq!(leases.live_until(now), None);
        assert_eq!(leases.request("never-held", Duration::ZERO, now), Grant::Released);
    }

    #[test]
    fn leases_are_bounded_in_length_count_and_name() {
        let now = Instant::now();
        let mut leases = Leases::default();
        assert_eq!(leases.request("v", Duration::from_secs(86_400), now), Grant::Granted { lease: MAX_LEASE });
        for n in 1..MAX_VIEWERS {
            assert!(matches!(leases.request(&format!("v{n}"), SECOND, now), Grant::Granted { .. }));
        }
        assert!(matches!(leases.request("one-too-many", SECOND, now), Grant::Refused(_)));
        assert!(matches!(leases.request("v", SECOND, now), Grant::Granted { .. }), "a renewal is not a new viewer");
        // Once the one-second leases lapse there is room again.
        assert!(matches!(leases.request("one-too-many", SECOND, now + 2 * SECOND), Grant::Granted { .. }));
        for bad in ["", "tab\there", &"x".repeat(MAX_VIEWER_CHARS + 1)] {
            assert!(matches!(leases.request(bad, SECOND, now), Grant::Refused(_)), "{bad:?}");
        }
    }
}
