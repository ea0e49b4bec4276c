//! The requests a connection has read and not yet answered, in the order
//! they arrived: the connection's reader puts frames in, the connection
//! takes the next request to dispatch, and a handler may take more of those
//! already read (a run of produce requests, `produce::handle`).
//!
//! Each frame comes with its share of the read budgets; the shares of the
//! requests taken stay held until the connection has answered them
//! ([`Queue::release_taken`]).

use bytes::Bytes;
use tokio::sync::OwnedSemaphorePermit;
use tokio::sync::mpsc;

use super::{Request, parse};

/// A frame's part of the connection's budget and of the broker's
/// (`queued_max_request_bytes`), both given back when it is answered.
pub type Share = (OwnedSemaphorePermit, OwnedSemaphorePermit);

/// A request as decoded, or why the connection must close.
pub type Parsed = Result<Request, String>;

pub struct Queue {
    frames: mpsc::Receiver<(Bytes, Share)>,
    /// A request decoded to see whether a handler would take it, and not
    /// taken: the next one out.
    looked_at: Option<(Parsed, Share)>,
    /// The shares of the requests taken and not yet answered.
    taken: Vec<Share>,
}

impl Queue {
    /// A queue of at most `capacity` frames read ahead, and the sender the
    /// reader fills it with.
    pub fn new(capacity: usize) -> (mpsc::Sender<(Bytes, Share)>, Queue) {
        let (sender, frames) = mpsc::channel(capacity);
        let queue = Queue {
            frames,
            looked_at: None,
            taken: Vec::new(),
        };
        (sender, queue)
    }

    /// Waits for the next request; `None` once the reader has stopped and
    /// every frame it read is taken.
    pub async fn next(&mut self) -> Option<Parsed> {
        let (parsed, share) = match self.looked_at.take() {
            Some(looked_at) => looked_at,
            None => {
                let (frame, share) = self.frames.recv().await?;
                (parse(frame), share)
            }
        };
        self.taken.push(share);
        Some(parsed)
    }

    /// Takes the next request if it is already read and `take` accepts it
    /// (a request it gives back stays first in the queue); never waits.
    pub fn try_take<T>(&mut self, take: impl FnOnce(Request) -> Result<T, Request>) -> Option<T> {
        let (parsed, share) = match self.looked_at.take() {
            Some(looked_at) => looked_at,
            None => {
                let (frame, share) = self.frames.try_recv().ok()?;
                (parse(frame), share)
            }
        };
        match parsed.map(take) {
            Ok(Ok(taken)) => {
                self.taken.push(share);
                Some(taken)
            }
            Ok(Err(other)) => {
                self.looked_at = Some((Ok(other), share));
                None
            }
            Err(reason) => {
                self.looked_at = Some((Err(reason), share));
                None
            }
        }
    }

    /// Whether no request is waiting to be taken.
    pub fn is_empty(&self) -> bool {
        self.looked_at.is_none() && self.frames.is_empty()
    }

    /// Gives back the budget shares of the requests taken so far: they are
    /// answered, or the connection is closing.
    pub fn release_taken(&mut self) {
        self.taken.clear();
    }
}
