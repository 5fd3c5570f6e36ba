//! Shutdown: how a run is told to stop. A leaf: every layer that waits checks these tokens.

use tokio_util::sync::CancellationToken;

/// How a run is told to stop. Cloning shares the tokens.
#[derive(Debug, Clone, Default)]
pub struct Shutdown {
    /// Stop taking jobs; let requests in flight finish within the grace period.
    pub stop: CancellationToken,
    /// Drop requests in flight at once.
    pub abort: CancellationToken,
}

impl Shutdown {
    /// Tokens that nobody has cancelled yet.
    pub fn new() -> Shutdown {
        Shutdown::default()
    }
}
