//! Open files: a run needs a descriptor per connection, and the defaults of many systems
//! (256 on macOS, 1,024 on Linux desktops) are below what `-c 1000` takes. Running out would
//! turn healthy servers into `connect` rows ("Too many open files"), so at the start the soft
//! limit is raised to the hard one (as Go's runtime does for every program), and if that is
//! still short, the concurrency is capped to fit, with one warning. A leaf module.

use std::num::NonZeroUsize;

/// Descriptors kept aside for what is not a connection: the report, logs, the input, saved
/// bodies, Redis, robots.txt, the runtime's own.
pub const HEADROOM: u64 = 64;

/// Each request in flight may hold a connection, and as many again may idle in the pool.
pub const PER_REQUEST: u64 = 2;

/// Raises the soft `RLIMIT_NOFILE` to the hard limit (on macOS, no further than the kernel's
/// `OPEN_MAX`-like bound `kern.maxfilesperproc`, which `setrlimit` enforces: the raise is
/// retried lower if refused). Returns the soft limit now in force; `None` where it cannot be
/// read.
#[cfg(unix)]
pub fn raise() -> Option<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid rlimit for getrlimit to fill.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return None;
    }
    let mut want = lim.rlim_max;
    while want > lim.rlim_cur {
        let new = libc::rlimit {
            rlim_cur: want,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: `new` is a valid rlimit; raising the soft limit up to the hard one is
        // allowed to any process.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &new) } == 0 {
            lim.rlim_cur = want;
            break;
        }
        // An unlimited hard limit the kernel does not take (macOS): try lower.
        want = (want / 2).max(lim.rlim_cur);
        if want == lim.rlim_cur {
            break;
        }
    }
    // `rlim_t` is u64 here, another width elsewhere.
    #[allow(clippy::useless_conversion)]
    Some(u64::try_from(lim.rlim_cur).unwrap_or(u64::MAX))
}

#[cfg(not(unix))]
pub fn raise() -> Option<u64> {
    None
}

/// The concurrency that fits in `limit` open files, if `concurrency` does not.
pub fn fit(concurrency: usize, limit: u64) -> Option<NonZeroUsize> {
    let needs = (concurrency as u64)
        .saturating_mul(PER_REQUEST)
        .saturating_add(HEADROOM);
    if needs <= limit {
        return None;
    }
    let fits = limit.saturating_sub(HEADROOM) / PER_REQUEST;
    NonZeroUsize::new(usize::try_from(fits).unwrap_or(usize::MAX).max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_concurrency_that_fits_is_kept_and_one_that_does_not_is_capped() {
        assert_eq!(fit(16, 1024), None);
        assert_eq!(fit(480, 1024), None);
        assert_eq!(fit(1000, 256).map(NonZeroUsize::get), Some(96));
        assert_eq!(fit(1000, 10).map(NonZeroUsize::get), Some(1));
    }

    #[cfg(unix)]
    #[test]
    fn raising_leaves_the_soft_limit_at_the_hard_one() {
        let soft = raise().expect("the limit can be read");
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: `lim` is a valid rlimit for getrlimit to fill.
        assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) }, 0);
        #[allow(clippy::useless_conversion)]
        let cur = u64::try_from(lim.rlim_cur).unwrap();
        assert_eq!(soft, cur);
        assert!(lim.rlim_cur == lim.rlim_max || lim.rlim_max == libc::RLIM_INFINITY);
    }
}
