//! The cookie store of a run (`--cookies`, `-b`): reqwest's `Jar`, which keeps cookies per
//! host as a browser does and adds them to every request that has no `Cookie` header of its
//! own. The `-b` cookies seed it for each input URL's own host, the first time a job of that
//! host is sent, so they never go to another host after a redirect, and the cookies servers
//! set still do (a `Cookie` header would switch the store off).

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use reqwest::cookie::Jar;
use url::Url;

pub struct Cookies {
    jar: Arc<Jar>,
    /// The `-b` cookies, each `name=value; Path=/`.
    seed: Vec<String>,
    /// Hosts seeded so far.
    seeded: Mutex<HashSet<String>>,
}

impl Cookies {
    /// A store that starts with `seed` (`name=value` each) for the hosts of the input.
    pub fn new(seed: &[String]) -> Cookies {
        Cookies {
            jar: Arc::new(Jar::default()),
            seed: seed.iter().map(|c| format!("{c}; Path=/")).collect(),
            seeded: Mutex::default(),
        }
    }

    /// The store, for the client.
    pub fn jar(&self) -> Arc<Jar> {
        Arc::clone(&self.jar)
    }

    /// Before a request to a job's own host: the `-b` cookies for that host, once.
    pub fn seed(&self, url: &Url) {
        let Some(host) = url.host_str() else { return };
        if self.seed.is_empty() {
            return;
        }
        let new = self
            .seeded
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(host.to_string());
        if new {
            for cookie in &self.seed {
                self.jar.add_cookie_str(cookie, url);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::cookie::CookieStore;

    #[test]
    fn seeded_cookies_go_to_their_host_on_any_path_and_nowhere_else() {
        let cookies = Cookies::new(&["a=1".to_string(), "b=2".to_string()]);
        let own: Url = "http://example.test/deep/page?q".parse().unwrap();
        cookies.seed(&own);
        // The jar's order is its hash map's: sorted here.
        let sent = |u: &str| {
            cookies.jar.cookies(&u.parse().unwrap()).map(|v| {
                let mut each: Vec<&str> = v.to_str().unwrap().split("; ").collect();
                each.sort_unstable();
                each.join("; ")
            })
        };
        assert_eq!(sent("http://example.test/").as_deref(), Some("a=1; b=2"));
        assert_eq!(
            sent("https://example.test:8443/other").as_deref(),
            Some("a=1; b=2")
        );
        assert_eq!(sent("http://elsewhere.test/"), None);
        assert_eq!(sent("http://sub.example.test/"), None, "host-only");
    }
}
