//! Identical misses at once run once. The first request for a key that is
//! not kept leads: it runs the query, and its capture fills the entry. A
//! request for the same key meanwhile follows: it waits until the leader's
//! capture ends (kept, not kept, failed or abandoned) and looks again, so a
//! dashboard opened by many people after a write costs one run, not one
//! per viewer.

use std::{collections::HashMap, sync::Arc};

use parking_lot::Mutex;
use tokio::sync::watch;

use super::{entries::ResultCache, key::Key};

/// The keys being run now, each with the signal its leader drops at the end.
#[derive(Default)]
pub(super) struct Running(Mutex<HashMap<Key, watch::Receiver<()>>>);

/// What a request that found no entry does.
pub enum Turn {
    /// Run the query; the capture ends the turn.
    Lead(Leading),
    /// Another request is running it: wait for [`Following::done`], then
    /// look again.
    Follow(Following),
}

/// The one run of a key; dropping it wakes the followers.
pub struct Leading {
    cache: Arc<ResultCache>,
    key: Key,
    _signal: watch::Sender<()>,
}

impl Drop for Leading {
    fn drop(&mut self) {
        self.cache.running().0.lock().remove(&self.key);
    }
}

/// A wait for another request's run of the same key.
pub struct Following(watch::Receiver<()>);

impl Following {
    /// Returns once the leader's run has ended.
    pub async fn done(mut self) {
        // Nothing is ever sent: the sender's drop is the signal.
        while self.0.changed().await.is_ok() {}
    }
}

impl ResultCache {
    /// Leads the run of `key`, or follows the run already under way.
    pub fn turn(self: &Arc<Self>, key: Key) -> Turn {
        let mut running = self.running().0.lock();
        if let Some(signal) = running.get(&key) {
            return Turn::Follow(Following(signal.clone()));
        }
        let (signal, done) = watch::channel(());
        running.insert(key, done);
        Turn::Lead(Leading {
            cache: Arc::clone(self),
            key,
            _signal: signal,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::{CacheCounters, KeyParts};

    fn key(sql: &str) -> Key {
        Key::of(&KeyParts {
            sql,
            params: "",
            format: "json",
            max_rows: 10,
            client_max_rows: false,
            max_result_bytes: 10,
            pin: None,
            role: crate::role::Role::Read,
            read_only: false,
        })
    }

    #[tokio::test]
    async fn one_leads_the_others_follow_until_it_ends() {
        let cache = Arc::new(ResultCache::new(
            true,
            1 << 20,
            1 << 16,
            CacheCounters::detached(),
        ));
        let Turn::Lead(lead) = cache.turn(key("a")) else {
            panic!("the first request leads");
        };
        let Turn::Follow(follow) = cache.turn(key("a")) else {
            panic!("the second follows");
        };
        assert!(
            matches!(cache.turn(key("b")), Turn::Lead(_)),
            "another key leads"
        );
        let waiting = tokio::spawn(follow.done());
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        drop(lead);
        waiting.await.unwrap();
        // The turn is over: the next request leads again.
        assert!(matches!(cache.turn(key("a")), Turn::Lead(_)));
    }
}
