//! One client connection: framing, ordering and limits.
//!
//! A reader task reads frames (size checked before room is made) into a
//! bounded queue (`handlers::Queue`); the connection task takes each
//! request in turn, hands it to `handlers::handle`, and writes the answers
//! in order, as Kafka does: header bytes from a buffer, record bytes
//! straight from the log files with `sendfile(2)`. A handler may answer
//! more than the request it was handed: a produce request takes with it
//! those pipelined behind it (`handlers::produce`). The queue has two
//! bounds: how many requests a pipelining client may have read ahead of the
//! one being answered (`max_in_flight_requests_per_connection`), and how
//! many bytes the requests read and not yet answered may hold
//! (`max_queued_request_bytes_per_connection`): the reader takes a frame's
//! share of that budget before it makes room for the frame, and the share comes
//! back when the request is answered. Without the byte bound a producer
//! to 10,000 partitions kept 50 MiB of 1 MiB requests in one connection's
//! queue and run (measured). A frame also takes its share of the broker's
//! budget, `queued_max_request_bytes`, shared by every connection, so many
//! connections with large requests cannot add up to gigabytes. Only
//! Produce may send a frame past `request_max_bytes_except_produce`: the
//! API key is read with the size, before the body.
//!
//! Responses to such runs are written together: a small response stays in a
//! buffer while another request is already waiting, and the buffer is
//! written when nothing more is waiting, before any request that may wait
//! (a long-polling fetch, a produce with acks=all) and when it is full. A
//! producer with many small batches in flight then costs the broker one
//! write(2) per run of requests instead of one per request; a response is
//! held only while the broker works on requests that were already there.

use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use rill_protocol::ApiKey;
use rill_protocol::frame::frame_len;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::Semaphore;
use tokio::sync::{mpsc, watch};

use crate::handlers::{self, Queue, Share};
use crate::response::Response;
use crate::sendfile::write_regions;
use crate::server::Shared;

/// A client that stops reading its responses must not hold a connection,
/// its buffers and the log files it was being sent forever.
const RESPONSE_WRITE_TIMEOUT: Duration = Duration::from_secs(60);

/// Produce responses buffered before a write; a few hundred of them.
const COALESCED_RESPONSES_MAX_BYTES: usize = 64 * 1024;

/// Serves one connection until the client closes it, it breaks a rule, or
/// the broker shuts down.
pub async fn serve(shared: Arc<Shared>, stream: TcpStream, mut shutdown: watch::Receiver<bool>) {
    let peer_addr = stream.peer_addr();
    let peer = peer_addr
        .as_ref()
        .map(|addr| addr.to_string())
        .unwrap_or_else(|_| "unknown".to_string());
    // Kafka shows a member's host as Java prints an address: `/127.0.0.1`.
    let client_host = peer_addr
        .map(|addr| format!("/{}", addr.ip()))
        .unwrap_or_default();
    // Responses are written whole; Nagle's algorithm would only delay them.
    let _ = stream.set_nodelay(true);
    let (read_half, mut write_half) = stream.into_split();
    let (frames_tx, mut queue) = Queue::new(shared.config.max_in_flight_requests_per_connection);
    let reader = tokio::spawn(read_frames(
        shared.clone(),
        read_half,
        frames_tx,
        shutdown.clone(),
        peer.clone(),
    ));

    let mut held = Vec::new();
    while let Some(parsed) = queue.next().await {
        let started = Instant::now();
        let request = match parsed {
            Ok(request) => request,
            Err(reason) => {
                tracing::info!(%peer, %reason, "closing connection: bad request");
                break;
            }
        };
        // It may wait (a fetch, acks=all, a join): what is held goes out
        // first.
        let flushed = if request.may_wait() {
            write_held(&mut write_half, &mut held).await
        } else {
            Ok(())
        };
        if let Err(error) = flushed {
            tracing::debug!(%peer, %error, "closing connection: write failed");
            break;
        }
        let api = request.api_name();
        let responses =
            handlers::handle(&shared, request, &mut queue, &client_host, &mut shutdown).await;
        let written = match write_responses(&mut write_half, &mut held, responses).await {
            // Held only while another request is already waiting; once it
            // is parsed, a request that may wait writes them first.
            Ok(()) if !held.is_empty() && queue.is_empty() => {
                write_held(&mut write_half, &mut held).await
            }
            other => other,
        };
        queue.release_taken();
        shared.metrics.observe_request(api, started.elapsed());
        if let Err(error) = written {
            tracing::debug!(%peer, %error, "closing connection: write failed");
            break;
        }
    }
    queue.release_taken();
    let _ = write_held(&mut write_half, &mut held).await;
    reader.abort();
    let _ = write_half.shutdown().await;
}

/// Writes a dispatch's responses in order: a small one joins those held
/// (see the module's note), a larger one goes out after them.
async fn write_responses(
    write_half: &mut OwnedWriteHalf,
    held: &mut Vec<u8>,
    responses: Vec<Option<Response>>,
) -> io::Result<()> {
    for response in responses {
        // None: acks=0 produce, the client expects no answer.
        let Some(response) = response else { continue };
        let frame = &response.frame;
        if frame.regions.is_empty() && held.len() + frame.buf.len() <= COALESCED_RESPONSES_MAX_BYTES
        {
            held.extend_from_slice(&frame.buf);
        } else {
            write_held(write_half, held).await?;
            write_timed(write_half, &response).await?;
        }
    }
    Ok(())
}

/// Reads frames until EOF, an error, a broken limit, or shutdown.
async fn read_frames(
    shared: Arc<Shared>,
    read_half: OwnedReadHalf,
    frames: mpsc::Sender<(Bytes, Share)>,
    shutdown: watch::Receiver<bool>,
    peer: String,
) {
    let mut reader = FrameReader::new(shared, read_half, shutdown, peer);
    while let Some(frame) = reader.next_frame().await {
        if frames.send(frame).await.is_err() {
            return;
        }
    }
}

/// One connection's frame reader and the limits it keeps. Each step
/// returns `None` when the connection must close (it has logged why).
struct FrameReader {
    shared: Arc<Shared>,
    inbox: Inbox,
    shutdown: watch::Receiver<bool>,
    peer: String,
    idle: Duration,
    receive: Duration,
    /// `socket_request_max_bytes`.
    max: usize,
    /// `request_max_bytes_except_produce`.
    small_max: usize,
    /// `max_queued_request_bytes_per_connection`, and the budget itself.
    budget_max: usize,
    budget: Arc<Semaphore>,
    /// `queued_max_request_bytes` (the budget is `Shared::request_budget`).
    broker_budget_max: usize,
}

impl FrameReader {
    fn new(
        shared: Arc<Shared>,
        read_half: OwnedReadHalf,
        shutdown: watch::Receiver<bool>,
        peer: String,
    ) -> FrameReader {
        let config = &shared.config;
        let budget_max = config.max_queued_request_bytes_per_connection;
        FrameReader {
            inbox: Inbox {
                half: read_half,
                buf: BytesMut::new(),
            },
            shutdown,
            peer,
            idle: Duration::from_millis(config.connections_max_idle_ms),
            receive: Duration::from_millis(config.request_receive_timeout_ms),
            max: config.socket_request_max_bytes,
            small_max: config.request_max_bytes_except_produce,
            budget_max,
            budget: Arc::new(Semaphore::new(budget_max)),
            broker_budget_max: config.queued_max_request_bytes,
            shared,
        }
    }

    /// The next whole frame and its share of the budgets.
    async fn next_frame(&mut self) -> Option<(Bytes, Share)> {
        if self.inbox.buf.is_empty() {
            self.first_byte().await?;
        }
        let len = self.frame_len().await?;
        let share = self.take_share(len).await?;
        self.body(len).await?;
        let frame = self.inbox.take_frame(len);
        self.shared.metrics.bytes_received(frame.len() + 4);
        Some((frame, share))
    }

    /// Waits, up to the idle timeout, for a frame's first byte.
    async fn first_byte(&mut self) -> Option<()> {
        let first = tokio::select! {
            read = tokio::time::timeout(self.idle, self.inbox.fill(1)) => read,
            _ = self.shutdown.wait_for(|stop| *stop) => return None,
        };
        match first {
            Err(_) => {
                tracing::debug!(peer = %self.peer, "closing idle connection");
                None
            }
            Ok(Err(_)) => None, // EOF or reset: the client is gone.
            Ok(Ok(())) => Some(()),
        }
    }

    /// Reads the frame's size (and for a large frame its API key) and
    /// checks them against the limits.
    async fn frame_len(&mut self) -> Option<usize> {
        // From the first byte on, the whole frame must arrive in time
        // (not counting the wait for budget, which is the broker's).
        let deadline = tokio::time::Instant::now() + self.receive;
        let (max, small_max) = (self.max, self.small_max);
        let inbox = &mut self.inbox;
        let len = tokio::time::timeout_at(deadline, async {
            inbox.fill(4).await?;
            let prefix = [inbox.buf[0], inbox.buf[1], inbox.buf[2], inbox.buf[3]];
            let len = frame_len(prefix, max)
                .map_err(|error| io::Error::new(io::ErrorKind::InvalidData, error))?;
            if len > small_max {
                // The API key is the frame's first two bytes.
                inbox.fill(6).await?;
                let api_key = i16::from_be_bytes([inbox.buf[4], inbox.buf[5]]);
                only_produce_past(api_key, len, small_max)?;
            }
            io::Result::Ok(len)
        })
        .await;
        match len {
            Ok(Ok(len)) => Some(len),
            Err(_) => {
                let receive = self.receive;
                tracing::info!(peer = %self.peer, "closing connection: request not received within {receive:?}");
                None
            }
            Ok(Err(error)) if error.kind() == io::ErrorKind::InvalidData => {
                tracing::info!(peer = %self.peer, %error, "closing connection: bad frame");
                None
            }
            Ok(Err(_)) => None,
        }
    }

    /// Takes a frame's share of the connection's budget and the broker's.
    async fn take_share(&mut self, len: usize) -> Option<Share> {
        // A frame larger than a whole budget waits for all of it. The
        // connection's share is taken first, then the broker's, always in
        // that order, so no two readers wait on each other.
        let own = u32::try_from(len.min(self.budget_max)).unwrap_or(u32::MAX);
        let broker = u32::try_from(len.min(self.broker_budget_max)).unwrap_or(u32::MAX);
        let (budget, broker_budget) = (&self.budget, &self.shared.request_budget);
        tokio::select! {
            share = async {
                let own = budget.clone().acquire_many_owned(own).await.ok()?;
                let broker = broker_budget.clone().acquire_many_owned(broker).await.ok()?;
                Some((own, broker))
            } => share,
            _ = self.shutdown.wait_for(|stop| *stop) => None,
        }
    }

    /// Reads the rest of a frame of `len` bytes, in time.
    async fn body(&mut self, len: usize) -> Option<()> {
        let deadline = tokio::time::Instant::now() + self.receive;
        match tokio::time::timeout_at(deadline, self.inbox.fill(4 + len)).await {
            Err(_) => {
                let receive = self.receive;
                tracing::info!(peer = %self.peer, "closing connection: request not received within {receive:?}");
                None
            }
            Ok(Err(_)) => None,
            Ok(Ok(())) => Some(()),
        }
    }
}

/// Produce, the one request that carries records, is the only one allowed
/// past `request_max_bytes_except_produce`.
fn only_produce_past(api_key: i16, len: usize, small_max: usize) -> io::Result<()> {
    if api_key == ApiKey::Produce as i16 {
        return Ok(());
    }
    Err(io::Error::new(
        io::ErrorKind::InvalidData,
        format!(
            "a request of API key {api_key} announces {len} bytes; \
             only Produce may pass {small_max} (request_max_bytes_except_produce)"
        ),
    ))
}

/// A frame buffer grows at most this much at a time, as bytes arrive, so
/// a client that announces 100 MiB and sends one byte holds one small
/// buffer, not 100 MiB.
const FRAME_INITIAL_CAPACITY_MAX: usize = 1024 * 1024;

/// Room for at least this much is made before a read, so that a pipelining
/// client's small requests arrive several to a system call.
const READ_MIN: usize = 16 * 1024;

/// A connection's read buffer goes on using the memory its last frame was
/// cut from while that memory is no larger than this; past it, the buffer
/// starts afresh, so that an idle connection does not hold a large
/// request's memory. (The next read usually begins while the last frame is
/// still being answered, so the buffer mostly moves to new memory anyway:
/// what keeps that cheap is malloc reusing what frames free,
/// `keep_freed_memory` in the CLI.)
const INBOX_KEPT_MAX: usize = 512 * 1024;

/// The bytes read from a connection and not yet cut into frames. Reads go
/// straight into it, as much as the socket holds and there is room for:
/// a large request is copied once, from the socket into the memory its
/// frame is cut from. (A 64 KiB `BufReader` in between copied up to two
/// thirds of a 160 KiB produce request a second time: 4.7 % of the
/// broker's samples at 1.5 M msg/s.)
struct Inbox {
    half: OwnedReadHalf,
    buf: BytesMut,
}

impl Inbox {
    /// Reads until at least `n` bytes are buffered; EOF before is an error.
    async fn fill(&mut self, n: usize) -> io::Result<()> {
        while self.buf.len() < n {
            let missing = n - self.buf.len();
            // Grow only as bytes arrive, up to the announced length.
            let want = missing.min(self.buf.len().max(FRAME_INITIAL_CAPACITY_MAX));
            if self.buf.capacity() - self.buf.len() < want {
                self.buf.reserve(want.max(READ_MIN));
            }
            if self.half.read_buf(&mut self.buf).await? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        }
        Ok(())
    }

    /// Cuts the buffered frame of `len` bytes (after its 4-byte size) off
    /// the front; what follows it stays for the next.
    fn take_frame(&mut self, len: usize) -> Bytes {
        self.buf.advance(4);
        let frame = self.buf.split_to(len).freeze();
        // The memory behind the buffer is at least this much.
        if frame.len() + self.buf.capacity() > INBOX_KEPT_MAX {
            self.buf = BytesMut::from(&self.buf[..]);
        }
        frame
    }
}

/// Writes the held responses, if any.
async fn write_held(write_half: &mut OwnedWriteHalf, held: &mut Vec<u8>) -> io::Result<()> {
    if held.is_empty() {
        return Ok(());
    }
    let written = tokio::time::timeout(RESPONSE_WRITE_TIMEOUT, write_half.write_all(held))
        .await
        .unwrap_or_else(|_| Err(io::ErrorKind::TimedOut.into()));
    held.clear();
    written
}

async fn write_timed(write_half: &mut OwnedWriteHalf, response: &Response) -> io::Result<()> {
    tokio::time::timeout(RESPONSE_WRITE_TIMEOUT, write_response(write_half, response))
        .await
        .unwrap_or_else(|_| Err(io::ErrorKind::TimedOut.into()))
}

async fn write_response(write_half: &mut OwnedWriteHalf, response: &Response) -> io::Result<()> {
    let frame = &response.frame;
    if frame.regions.is_empty() {
        write_half.write_all(&frame.buf).await?;
        return Ok(());
    }
    write_regions(write_half, frame).await
}
