//! Single-flight: `get_or_fetch` runs one fetch per key at a time.

use super::{Cache, FlightResult, Ttl};
use crate::backend::CacheBackend;
use crate::codec::{self, CacheValue};
use crate::error::{BoxError, Error, Result, short_key};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use tokio::sync::watch;

impl<B: CacheBackend> Cache<B> {
    /// Returns the cached value for `key`, or runs `fetch` on a miss, stores its value with
    /// `ttl` and returns it.
    ///
    /// Single-flight: while one caller's fetch for a key runs, other callers for that key wait
    /// for it and share its value or its error ([`Error::Fetch`]) instead of fetching again.
    /// If the fetching caller is cancelled, a waiting caller takes over.
    pub async fn get_or_fetch<T, F, Fut, E>(
        &self,
        key: &str,
        ttl: impl Into<Ttl>,
        fetch: F,
    ) -> Result<T>
    where
        T: CacheValue,
        F: FnOnce() -> Fut,
        Fut: Future<Output = std::result::Result<T, E>>,
        E: Into<BoxError>,
    {
        let ttl = ttl.into();
        let mut fetch = Some(fetch);
        let mut counted = true;
        loop {
            if let Some(v) = self.get_inner::<T>(key, counted).await? {
                return Ok(v);
            }
            counted = false;
            let role = {
                let mut map = self.inner.inflight.lock();
                match map.get(key) {
                    Some(rx) => Err(rx.clone()),
                    None => {
                        let (tx, rx) = watch::channel(None);
                        map.insert(key.to_owned(), rx);
                        Ok(tx)
                    }
                }
            };
            match role {
                Err(mut rx) => {
                    self.count(|c| &c.coalesced, 1);
                    let shared = match rx.wait_for(Option::is_some).await {
                        Ok(r) => r.clone(),
                        // The fetching caller was cancelled: try again (maybe as the fetcher).
                        Err(_) => continue,
                    };
                    match shared {
                        Some(Ok(bytes)) => match codec::decode::<T>(key, &bytes) {
                            Ok(v) => return Ok(v),
                            // Another caller fetched a different type under this key.
                            Err(_) => continue,
                        },
                        Some(Err(source)) => {
                            return Err(Error::Fetch {
                                key: short_key(key),
                                source,
                            });
                        }
                        None => continue,
                    }
                }
                Ok(tx) => {
                    let _guard = FlightGuard {
                        map: &self.inner.inflight,
                        key,
                        tx: &tx,
                    };
                    // Another fetch may have finished between our miss and taking the lead.
                    if let Some(v) = self.get_inner::<T>(key, false).await? {
                        let _ = tx.send(codec::encode(key, &v).ok().map(Ok));
                        return Ok(v);
                    }
                    let Some(fetch) = fetch.take() else {
                        // Unreachable: the lead is taken at most once per call, since a leader
                        // always returns. Treated as a miss rather than a panic.
                        return Err(Error::Config("get_or_fetch: fetch already used".into()));
                    };
                    self.count(|c| &c.fetches, 1);
                    let value = match fetch().await {
                        Ok(v) => v,
                        Err(e) => {
                            let source: Arc<dyn std::error::Error + Send + Sync> =
                                Arc::from(e.into());
                            let _ = tx.send(Some(Err(Arc::clone(&source))));
                            return Err(Error::Fetch {
                                key: short_key(key),
                                source,
                            });
                        }
                    };
                    let stored = match codec::encode(key, &value) {
                        Ok(bytes) => self
                            .put_encoded(key, bytes.clone(), ttl)
                            .await
                            .map(|()| bytes),
                        Err(source) => Err(Error::Encode {
                            key: short_key(key),
                            source,
                        }),
                    };
                    return match stored {
                        Ok(bytes) => {
                            let _ = tx.send(Some(Ok(bytes)));
                            Ok(value)
                        }
                        Err(e) => {
                            let e = Arc::new(e);
                            let _ = tx.send(Some(Err(e.clone())));
                            Err(Arc::try_unwrap(e).unwrap_or_else(|shared| Error::Fetch {
                                key: short_key(key),
                                source: shared,
                            }))
                        }
                    };
                }
            }
        }
    }
}

/// Removes a key's in-flight marker when its fetching caller finishes or is cancelled.
struct FlightGuard<'a> {
    map: &'a Mutex<HashMap<String, watch::Receiver<FlightResult>>>,
    key: &'a str,
    tx: &'a watch::Sender<FlightResult>,
}

impl Drop for FlightGuard<'_> {
    fn drop(&mut self) {
        let mut map = self.map.lock();
        if map
            .get(self.key)
            .is_some_and(|rx| rx.same_channel(&self.tx.subscribe()))
        {
            map.remove(self.key);
        }
    }
}
