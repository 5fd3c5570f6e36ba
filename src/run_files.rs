//! The files a run writes besides its report: the `--quota-state` file and the
//! `--log-requests` log. Each is first *claimed* (locked, read and checked, not changed), so
//! that a run refused for any of them (or for its report) changes no byte of any file; then
//! *opened* (the state compacted, the log's header appended) once every check has passed.

use std::path::PathBuf;

use crate::config::Config;
use crate::error::Error;
use crate::files::ClaimError;
use crate::limits::ledger::{self, Ledger, Past};
use crate::reqlog::{self, LogClaim, LogWriter, RequestLog};

/// The files claimed, not yet changed. Dropped, they are left as they were (a file a claim
/// created is removed).
pub struct Claims {
    state: Option<ledger::Claim>,
    log: Option<(PathBuf, LogClaim)>,
}

/// The files opened: what the pool runs with.
#[derive(Default)]
pub struct Opened {
    /// The `--quota-state` ledger, and what earlier runs sent.
    pub state: Option<(Ledger, Past)>,
    /// The `--log-requests` sender for the workers and its writer.
    pub log: Option<(PathBuf, RequestLog, LogWriter)>,
}

/// Claims the files `config` names (see the module docs).
pub fn claim(config: &Config) -> Result<Claims, Error> {
    let state = match &config.quota_state {
        Some(path) => Some(
            ledger::claim(path, &config.quotas, &config.per_host_quotas).map_err(|e| {
                Error::QuotaState {
                    path: e.path,
                    reason: e.reason,
                }
            })?,
        ),
        None => None,
    };
    let log = match &config.log_requests {
        Some(path) => {
            let claim = reqlog::claim(path).map_err(|e| Error::RequestLog {
                path: path.clone(),
                reason: match e {
                    ClaimError::Busy => "in use by another ratefetch run (one run per file)".into(),
                    ClaimError::Io(e) => e.to_string(),
                },
            })?;
            Some((path.clone(), claim))
        }
        None => None,
    };
    Ok(Claims { state, log })
}

impl Claims {
    /// Every check passed: opens the files (the run changes them from here on).
    pub fn open(self, config: &Config) -> Result<Opened, Error> {
        let state = match self.state {
            Some(claim) => Some(claim.open().map_err(|e| Error::QuotaState {
                path: e.path,
                reason: e.reason,
            })?),
            None => None,
        };
        let log = match self.log {
            Some((path, claim)) => {
                let (log, writer) = claim.start(config).map_err(|e| Error::RequestLog {
                    path: path.clone(),
                    reason: e.to_string(),
                })?;
                Some((path, log, writer))
            }
            None => None,
        };
        Ok(Opened { state, log })
    }
}
