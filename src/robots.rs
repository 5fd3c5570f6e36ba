//! robots.txt for `--respect-robots` (RFC 9309): fetched once per origin, through the same
//! limits as every request, by the first job that needs it (others for that origin wait in
//! the scheduler, not in a worker). At most `MAX_ORIGINS` origins are kept.
//! A robots.txt that answers 4xx allows everything (§2.3.1.3); one that answers 5xx or
//! cannot be reached disallows the whole origin (§2.3.1.4), and the rows say so. A
//! Crawl-delay slows that host down below `--per-host-rate`.

use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, OnceLock};

use url::Url;

/// The most of a robots.txt that is read (RFC 9309 §2.5: at least 500 KiB).
pub const MAX_ROBOTS: usize = 512 * 1024;

/// What robots.txt says for one origin.
pub enum Rules {
    AllowAll,
    /// Everything is disallowed, and why.
    DisallowAll(String),
    Parsed(texting_robots::Robot),
}

impl Rules {
    /// `Err(why)` when `url` may not be fetched.
    pub fn check(&self, url: &Url) -> Result<(), String> {
        match self {
            Rules::AllowAll => Ok(()),
            Rules::DisallowAll(why) => Err(why.clone()),
            Rules::Parsed(robot) => {
                if robot.allowed(url.as_str()) {
                    Ok(())
                } else {
                    Err("robots.txt disallows this URL".to_string())
                }
            }
        }
    }

    /// Rules from a robots.txt fetch: its status and body, or why it could not be fetched.
    pub fn from_response(agent: &str, answer: Result<(u16, &[u8]), String>) -> Rules {
        match answer {
            Ok((status, body)) if (200..300).contains(&status) => {
                match texting_robots::Robot::new(agent, body) {
                    Ok(robot) => Rules::Parsed(robot),
                    // Unparseable: nothing in it applies (RFC 9309 §2.2).
                    Err(_) => Rules::AllowAll,
                }
            }
            Ok((status, _)) if (400..500).contains(&status) => Rules::AllowAll,
            Ok((status, _)) => Rules::DisallowAll(format!(
                "robots.txt answered {status}; the host is disallowed (RFC 9309 §2.3.1.4)"
            )),
            Err(why) => Rules::DisallowAll(format!(
                "robots.txt unreachable ({why}); the host is disallowed (RFC 9309 §2.3.1.4)"
            )),
        }
    }

    /// The Crawl-delay, if any.
    pub fn delay(&self) -> Option<std::time::Duration> {
        match self {
            Rules::Parsed(robot) => robot
                .delay
                .filter(|d| d.is_finite() && *d > 0.0)
                .map(|d| std::time::Duration::from_secs_f32(d.min(3600.0))),
            _ => None,
        }
    }
}

/// A fetch of an origin's robots.txt under way: if it ends without rules (a panic, a stop),
/// the origin is free to be fetched by another task.
pub struct Fetching<'a>(pub &'a Origin);

impl Drop for Fetching<'_> {
    fn drop(&mut self) {
        if self.0.rules.get().is_none() {
            self.0
                .fetching
                .store(false, std::sync::atomic::Ordering::Release);
        }
    }
}

/// The most origins whose rules are kept at once.
pub const MAX_ORIGINS: usize = 10_000;

/// The robots.txt rules of the origins seen, each fetched once while it is kept.
#[derive(Default)]
pub struct Robots {
    origins: Mutex<HashMap<String, Arc<Origin>>>,
}

/// One origin's robots.txt: its rules once known, and whether a fetch of it has begun.
#[derive(Default)]
pub struct Origin {
    pub rules: OnceLock<Arc<Rules>>,
    /// Set by the one task that fetches it; the others look again later.
    pub fetching: AtomicBool,
}

impl Robots {
    /// The entry for `url`'s origin.
    pub fn origin(&self, url: &Url) -> Arc<Origin> {
        let origin = url.origin().ascii_serialization();
        let mut origins = self
            .origins
            .lock()
            .expect("no panic while holding the robots map");
        if origins.len() >= MAX_ORIGINS && !origins.contains_key(&origin) {
            // Bounded: the rules already known are dropped (fetched again when needed);
            // fetches under way stay. A Crawl-delay outlives this in the scheduler's entry
            // for the host, as long as the host is in view.
            // Half of the rules known go (the map's order is arbitrary), so a crawl over
            // more origins than this does not fetch every robots.txt again at once.
            let mut n = 0u64;
            origins.retain(|_, o| {
                n += 1;
                o.rules.get().is_none() || n.is_multiple_of(2)
            });
        }
        origins.entry(origin).or_default().clone()
    }

    /// Origins whose rules are kept.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.origins
            .lock()
            .expect("no panic while holding the robots map")
            .len()
    }
}

/// The product token of a User-Agent (`ratefetch/0.1.0` → `ratefetch`), as robots.txt
/// groups name agents.
pub fn agent_token(user_agent: &str) -> &str {
    user_agent.split(['/', ' ']).next().unwrap_or(user_agent)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_is_bounded_and_keeps_fetches_under_way() {
        let robots = Robots::default();
        let busy = robots.origin(&url("http://busy.test/"));
        busy.fetching
            .store(true, std::sync::atomic::Ordering::Release);
        for i in 0..MAX_ORIGINS * 2 {
            let o = robots.origin(&url(&format!("http://h{i}.test/")));
            let _ = o.rules.set(Arc::new(Rules::AllowAll));
        }
        assert!(robots.len() <= MAX_ORIGINS, "{} origins kept", robots.len());
        // The fetch under way was not dropped: its waiters will find its rules.
        assert!(Arc::ptr_eq(
            &busy,
            &robots.origin(&url("http://busy.test/"))
        ));
    }

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    #[test]
    fn parsed_rules_for_our_agent() {
        let txt = b"User-agent: *\nDisallow: /private\n\nUser-agent: ratefetch\nDisallow: /no\nCrawl-delay: 2\n";
        let r = Rules::from_response("ratefetch", Ok((200, txt)));
        assert!(r.check(&url("http://a.test/yes")).is_ok());
        assert!(r.check(&url("http://a.test/no/x")).is_err());
        assert_eq!(r.delay(), Some(std::time::Duration::from_secs(2)));
    }

    #[test]
    fn status_rules_of_rfc_9309() {
        let u = url("http://a.test/x");
        assert!(Rules::from_response("ratefetch", Ok((404, b"")))
            .check(&u)
            .is_ok());
        let e = Rules::from_response("ratefetch", Ok((503, b"")))
            .check(&u)
            .unwrap_err();
        assert!(e.contains("503"), "{e}");
        let e = Rules::from_response("ratefetch", Err("connection refused".into()))
            .check(&u)
            .unwrap_err();
        assert!(e.contains("unreachable"), "{e}");
    }

    #[test]
    fn agent_token_is_the_product_name() {
        assert_eq!(agent_token("ratefetch/0.1.0"), "ratefetch");
        assert_eq!(agent_token("MyBot"), "MyBot");
    }
}
