//! Running a blocking store call from async code, for the disk backends.

use crate::{Error, Result};

/// Runs `job`, which blocks (file I/O, a lock wait), without stalling the runtime's other
/// tasks: on a multi-threaded tokio runtime in `block_in_place` (on this thread, after
/// handing the worker's other tasks to another one, so there is no hop to a pool thread and
/// back); on a current-thread runtime, where that is not allowed, on tokio's blocking pool;
/// outside a runtime, here. `backend` names the backend in the error of a failed pool task.
///
/// Trade-off of `block_in_place`: futures joined inside the same task (`join!`, `select!`)
/// wait while `job` runs; other tasks do not.
pub async fn off_runtime<T: Send + 'static>(
    backend: &'static str,
    job: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    match tokio::runtime::Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(job)
        }
        Ok(handle) => handle
            .spawn_blocking(job)
            .await
            .map_err(|e| Error::backend(backend, "a blocking task failed", e))?,
        Err(_) => job(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn on_this_thread() -> Result<std::thread::ThreadId> {
        Ok(std::thread::current().id())
    }

    #[test]
    fn runs_in_place_on_a_multi_threaded_runtime_and_on_the_pool_otherwise() {
        let multi = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .build()
            .unwrap();
        let (caller, ran) = multi.block_on(async {
            tokio::spawn(async {
                let caller = std::thread::current().id();
                (caller, off_runtime("test", on_this_thread).await.unwrap())
            })
            .await
            .unwrap()
        });
        assert_eq!(caller, ran, "block_in_place runs on the calling thread");
        let current = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let (caller, ran) = current.block_on(async {
            (
                std::thread::current().id(),
                off_runtime("test", on_this_thread).await.unwrap(),
            )
        });
        assert_ne!(caller, ran, "a current-thread runtime hands it to the pool");
        assert_eq!(on_this_thread().unwrap(), std::thread::current().id());
        let outside = futures_lite_block_on(off_runtime("test", on_this_thread)).unwrap();
        assert_eq!(
            outside,
            std::thread::current().id(),
            "outside a runtime: here"
        );
    }

    /// Polls a future to completion without a tokio runtime.
    fn futures_lite_block_on<F: std::future::Future>(f: F) -> F::Output {
        use std::task::{Context, Poll, Waker};
        let mut f = std::pin::pin!(f);
        let mut cx = Context::from_waker(Waker::noop());
        loop {
            if let Poll::Ready(out) = f.as_mut().poll(&mut cx) {
                return out;
            }
        }
    }
}
