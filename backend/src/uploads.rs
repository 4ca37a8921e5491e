//! Files being received, on disk before they are loaded: an HTTP upload
//! (`POST /api/v1/tables/.../data`) or a Flight SQL ingest, both spooled in
//! `data_dir/tmp/uploads`. [`SpoolBudget`] keeps their bytes together within
//! `ingest.max_spool_bytes`, the volume they share, so that one more answers
//! `too_many_requests` instead of filling the disk (in Kubernetes, of getting
//! the pod evicted). Each is also held to `ingest.max_upload_bytes` by its
//! transport.

use std::sync::{
    atomic::{AtomicU64, Ordering},
    Arc,
};

use crate::error::Error;

/// The bytes the files being received on this replica hold, against a limit
/// (0: none).
#[derive(Clone)]
pub struct SpoolBudget {
    held: Arc<AtomicU64>,
    limit: u64,
}

impl SpoolBudget {
    pub fn new(limit: u64) -> Self {
        Self {
            held: Arc::default(),
            limit,
        }
    }

    /// A claim on the budget for one file, holding nothing yet.
    pub fn claim(&self) -> Claim {
        Claim {
            budget: self.clone(),
            bytes: 0,
        }
    }

    /// Bytes held now.
    pub fn held(&self) -> u64 {
        self.held.load(Ordering::Relaxed)
    }
}

/// One file's share of the budget, given back when it is dropped (the file
/// loaded, refused or abandoned).
pub struct Claim {
    budget: SpoolBudget,
    bytes: u64,
}

impl Claim {
    /// Holds `more` bytes, or refuses them (holding nothing more) when the
    /// files being received would pass the limit together.
    pub fn hold(&mut self, more: u64) -> Result<(), Error> {
        let limit = self.budget.limit;
        self.budget
            .held
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
                (limit == 0 || held + more <= limit).then_some(held + more)
            })
            .map_err(|held| Error::TooManyRequests {
                message: format!(
                    "files being received hold {held} of the {limit} bytes they may spool \
                     (ingest.max_spool_bytes); retry when they are loaded"
                ),
                retry_after_secs: 5,
            })?;
        self.bytes += more;
        Ok(())
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        self.budget.held.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_share_the_budget_and_give_it_back() {
        let budget = SpoolBudget::new(100);
        let mut first = budget.claim();
        first.hold(60).unwrap();
        let mut second = budget.claim();
        let refused = second.hold(50).unwrap_err();
        assert_eq!(refused.code(), "too_many_requests");
        assert!(
            refused.to_string().contains("hold 60 of the 100"),
            "{refused}"
        );
        second.hold(40).unwrap();
        assert_eq!(budget.held(), 100);
        drop(first);
        assert_eq!(budget.held(), 40);
        second.hold(60).unwrap();
        drop(second);
        assert_eq!(budget.held(), 0);
        // No limit: anything.
        let mut free = SpoolBudget::new(0).claim();
        free.hold(u64::MAX / 2).unwrap();
    }
}
