//! Feeding an HTTP response body, chunk by chunk, to the synchronous streaming extractor.
//!
//! The extractor pulls from a [`BufRead`]; the body arrives as async chunks. The extractor runs
//! on a blocking thread reading from a bounded channel that this task fills as chunks arrive, so
//! at most a few chunks of the body are in memory at once, whatever the response's size, and
//! the parsing does not occupy an async worker.

use std::io::{self, BufRead, Read};

use bytes::Bytes;
use tokio::sync::mpsc;

use crate::error::ExtractError;

/// How many body chunks may wait for the extractor.
const CHANNEL_CHUNKS: usize = 8;

enum Msg {
    Data(Bytes),
    End,
    Failed,
}

/// A [`BufRead`] over the chunks sent by [`extract_body`].
struct ChunkReader {
    rx: mpsc::Receiver<Msg>,
    chunk: Bytes,
    pos: usize,
    done: bool,
}

impl ChunkReader {
    fn new(rx: mpsc::Receiver<Msg>) -> Self {
        Self {
            rx,
            chunk: Bytes::new(),
            pos: 0,
            done: false,
        }
    }
}

impl Read for ChunkReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let available = self.fill_buf()?;
        let n = available.len().min(buf.len());
        buf[..n].copy_from_slice(&available[..n]);
        self.consume(n);
        Ok(n)
    }
}

impl BufRead for ChunkReader {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        while self.pos >= self.chunk.len() && !self.done {
            match self.rx.blocking_recv() {
                Some(Msg::Data(b)) => {
                    self.chunk = b;
                    self.pos = 0;
                }
                Some(Msg::End) => self.done = true,
                // The body failed, or the request was dropped: not a clean end of the document.
                Some(Msg::Failed) | None => {
                    return Err(io::Error::other("the response body was cut off"));
                }
            }
        }
        Ok(&self.chunk[self.pos.min(self.chunk.len())..])
    }

    fn consume(&mut self, amt: usize) {
        self.pos = self.pos.saturating_add(amt).min(self.chunk.len());
    }
}

/// Why reading and extracting a body failed.
pub(crate) enum BodyError {
    /// Reading the body from the network failed (retryable).
    Network(reqwest::Error),
    /// The body is not a PMS response.
    Extract(ExtractError),
    /// The extraction task panicked or was cancelled.
    Task(String),
    /// The body is longer than the bytes it may have (the client's listing limit).
    TooLarge {
        /// The bytes it could have.
        limit: u64,
    },
}

/// Streams `response`'s body into `extract` (run on a blocking thread) and returns its result
/// and the number of body bytes read.
///
/// A network failure while reading the body wins over whatever the extractor made of the cut
/// body, so that the caller can retry. A body longer than `limit` bytes is cut there and
/// reported as [`BodyError::TooLarge`].
pub(crate) async fn extract_body<T, F>(
    mut response: reqwest::Response,
    limit: u64,
    extract: F,
) -> Result<(T, u64), BodyError>
where
    T: Send + 'static,
    F: FnOnce(&mut dyn BufRead) -> Result<T, ExtractError> + Send + 'static,
{
    let (tx, rx) = mpsc::channel(CHANNEL_CHUNKS);
    let task = tokio::task::spawn_blocking(move || {
        let mut reader = ChunkReader::new(rx);
        extract(&mut reader)
    });
    let mut network_error = None;
    let mut read = 0u64;
    let mut too_large = false;
    loop {
        match response.chunk().await {
            Ok(Some(bytes)) => {
                if bytes.is_empty() {
                    continue;
                }
                read = read.saturating_add(bytes.len() as u64);
                if read > limit {
                    // Not a clean end of the document: the extractor fails, and the limit is
                    // what gets reported.
                    let _ = tx.send(Msg::Failed).await;
                    too_large = true;
                    break;
                }
                if tx.send(Msg::Data(bytes)).await.is_err() {
                    // The extractor stopped early (an error in the document): no need to read on.
                    break;
                }
            }
            Ok(None) => {
                let _ = tx.send(Msg::End).await;
                break;
            }
            Err(e) => {
                let _ = tx.send(Msg::Failed).await;
                network_error = Some(e);
                break;
            }
        }
    }
    drop(tx);
    let extracted = task.await;
    if let Some(e) = network_error {
        return Err(BodyError::Network(e));
    }
    if too_large {
        return Err(BodyError::TooLarge { limit });
    }
    match extracted {
        Ok(Ok(v)) => Ok((v, read)),
        Ok(Err(e)) => Err(BodyError::Extract(e)),
        Err(join) => Err(BodyError::Task(if join.is_panic() {
            "the extraction task panicked".to_owned()
        } else {
            "the extraction task was cancelled".to_owned()
        })),
    }
}
