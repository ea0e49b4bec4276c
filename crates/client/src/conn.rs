//! One TCP connection to one broker: framing, correlation ids, pipelining
//! and the API versions both sides speak.
//!
//! Requests are written in the caller's task under a write lock; one reader
//! task per connection decodes every response and hands it to the caller that
//! waits on its correlation id. So any number of requests can be on the wire
//! at once (pipelining), and Kafka answers them in order on each connection.

use std::collections::HashMap;
use std::io::{self, IoSlice};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use rill_protocol::messages::{ApiVersionsRequest, RequestHeader, ResponseHeader};
use rill_protocol::{ApiKey, Decode, Decoder, Encode, Encoder, RequestBody, ResponseBody};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};

use crate::error::{Error, Result, code};

/// The largest response frame accepted. A fetch response is bounded by the
/// request's `max_bytes` (64 MiB at most from this client); anything above
/// this is a broken or hostile peer, not data.
const RESPONSE_BYTES_MAX: usize = 128 << 20;

/// Requests on the wire at once per connection. Kafka brokers read one
/// request at a time per connection, so more would only queue in socket
/// buffers; this bounds the memory held by waiting callers.
const IN_FLIGHT_MAX: usize = 64;

/// The versions of each API this client can encode and understand. The
/// version used on a connection is the highest both sides support.
const CLIENT_VERSIONS: &[(ApiKey, i16, i16)] = &[
    (ApiKey::ApiVersions, 0, 3),
    // Produce v3 is the first that carries record batch v2.
    (ApiKey::Produce, 3, 11),
    // Fetch v4 is the first with record batch v2; from v13 on topics are
    // named by id only, which this client does not need.
    (ApiKey::Fetch, 4, 12),
    (ApiKey::ListOffsets, 1, 9),
    (ApiKey::Metadata, 1, 12),
    (ApiKey::InitProducerId, 0, 5),
    (ApiKey::CreateTopics, 2, 7),
    (ApiKey::DeleteTopics, 1, 6),
    (ApiKey::CreatePartitions, 0, 3),
    (ApiKey::DescribeConfigs, 1, 4),
    (ApiKey::IncrementalAlterConfigs, 0, 1),
    (ApiKey::FindCoordinator, 1, 6),
    (ApiKey::JoinGroup, 2, 9),
    (ApiKey::SyncGroup, 1, 5),
    (ApiKey::Heartbeat, 1, 4),
    (ApiKey::LeaveGroup, 1, 5),
    (ApiKey::OffsetCommit, 2, 8),
    // OffsetFetch v8 asks for several groups at once; one is enough here.
    (ApiKey::OffsetFetch, 1, 7),
    (ApiKey::ListGroups, 1, 5),
    (ApiKey::DescribeGroups, 1, 5),
    (ApiKey::DeleteGroups, 0, 2),
    (ApiKey::DescribeQuorum, 0, 2),
    // KIP-848 (`GroupProtocol::Consumer`); v1 only makes the member id the
    // client's to choose.
    (ApiKey::ConsumerGroupHeartbeat, 0, 0),
];

/// The range of versions of `api` this client speaks.
pub(crate) fn client_versions(api: ApiKey) -> Option<(i16, i16)> {
    CLIENT_VERSIONS
        .iter()
        .find(|(key, _, _)| *key == api)
        .map(|(_, min, max)| (*min, *max))
}

struct Waiter {
    api: ApiKey,
    version: i16,
    reply: oneshot::Sender<Result<ResponseBody>>,
}

#[derive(Default)]
struct Pending {
    waiters: HashMap<i32, Waiter>,
    /// Why the connection is unusable, once it is.
    closed: Option<String>,
}

pub(crate) struct Connection {
    addr: String,
    client_id: String,
    request_timeout: Duration,
    writer: tokio::sync::Mutex<OwnedWriteHalf>,
    pending: Arc<Mutex<Pending>>,
    next_correlation_id: AtomicI32,
    in_flight: Arc<Semaphore>,
    /// The broker's version range per API key, from ApiVersions.
    broker_versions: HashMap<i16, (i16, i16)>,
}

impl Connection {
    /// Connects and learns the broker's API versions.
    pub(crate) async fn open(
        addr: &str,
        client_id: &str,
        request_timeout: Duration,
    ) -> Result<Arc<Connection>> {
        let stream = tokio::time::timeout(request_timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| Error::Timeout {
                addr: addr.to_string(),
                timeout_ms: request_timeout.as_millis() as u64,
            })?
            .map_err(|source| Error::Io {
                addr: addr.to_string(),
                source,
            })?;
        // Requests are small and latency matters more than packet count.
        let _ = stream.set_nodelay(true);
        let (reader, writer) = stream.into_split();
        let pending = Arc::new(Mutex::new(Pending::default()));
        tokio::spawn(read_responses(reader, pending.clone(), addr.to_string()));
        let mut connection = Connection {
            addr: addr.to_string(),
            client_id: client_id.to_string(),
            request_timeout,
            writer: tokio::sync::Mutex::new(writer),
            pending,
            next_correlation_id: AtomicI32::new(0),
            in_flight: Arc::new(Semaphore::new(IN_FLIGHT_MAX)),
            broker_versions: HashMap::new(),
        };
        let request = RequestBody::ApiVersions(ApiVersionsRequest {
            client_software_name: "rill-client".into(),
            client_software_version: env!("CARGO_PKG_VERSION").into(),
            ..Default::default()
        });
        let ResponseBody::ApiVersions(response) = connection.send_at(3, request).await? else {
            return Err(connection.protocol_error("ApiVersions answered with another API"));
        };
        if response.error_code != code::NONE && response.api_keys.is_empty() {
            return Err(Error::kafka(
                format!("ApiVersions to {addr}"),
                response.error_code,
                None,
            ));
        }
        connection.broker_versions = response
            .api_keys
            .iter()
            .map(|key| (key.api_key, (key.min_version, key.max_version)))
            .collect();
        Ok(Arc::new(connection))
    }

    pub(crate) fn addr(&self) -> &str {
        &self.addr
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.pending
            .lock()
            .map(|pending| pending.closed.is_some())
            .unwrap_or(true)
    }

    /// The broker's supported range of `api`, if it supports it at all.
    pub(crate) fn broker_versions(&self, api: ApiKey) -> Option<(i16, i16)> {
        self.broker_versions.get(&(api as i16)).copied()
    }

    /// The version of `api` to use with this broker: the highest both sides
    /// speak.
    pub(crate) fn version(&self, api: ApiKey) -> Result<i16> {
        let (client_min, client_max) = client_versions(api).unwrap_or((0, -1));
        let broker = self.broker_versions(api);
        match broker {
            Some((broker_min, broker_max))
                if broker_max >= client_min && broker_min <= client_max =>
            {
                Ok(client_max.min(broker_max))
            }
            _ => Err(Error::UnsupportedVersion {
                addr: self.addr.clone(),
                api: api.name(),
                client_min,
                client_max,
                broker,
            }),
        }
    }

    /// Sends a request at the negotiated version and waits for its answer.
    pub(crate) async fn call(
        &self,
        api: ApiKey,
        build: impl FnOnce(i16) -> RequestBody,
    ) -> Result<ResponseBody> {
        self.call_with_timeout(api, build, Duration::ZERO).await
    }

    /// As [`Connection::call`], allowing `extra` beyond the request timeout
    /// (a long-polling fetch waits on the broker on purpose).
    pub(crate) async fn call_with_timeout(
        &self,
        api: ApiKey,
        build: impl FnOnce(i16) -> RequestBody,
        extra: Duration,
    ) -> Result<ResponseBody> {
        let version = self.version(api)?;
        self.send_timed(version, build(version), self.request_timeout + extra)
            .await
    }

    async fn send_at(&self, version: i16, body: RequestBody) -> Result<ResponseBody> {
        self.send_timed(version, body, self.request_timeout).await
    }

    pub(crate) async fn send_timed(
        &self,
        version: i16,
        body: RequestBody,
        timeout: Duration,
    ) -> Result<ResponseBody> {
        let _permit = self
            .in_flight
            .acquire()
            .await
            .map_err(|_| self.disconnected())?;
        let posted = self
            .post(version, std::slice::from_ref(&body), true)
            .await?;
        match posted.into_iter().next() {
            Some((correlation_id, Some(answer))) => {
                self.answer(correlation_id, answer, timeout).await
            }
            _ => Err(self.disconnected()),
        }
    }

    /// Writes requests with as few system calls as the socket allows and
    /// returns at once, with their answers to be awaited later. Requests
    /// written one after another from one task reach the broker in that
    /// order (a producer with several batches of a partition in flight
    /// relies on it).
    pub(crate) async fn write_requests(
        self: &Arc<Self>,
        version: i16,
        bodies: &[RequestBody],
    ) -> Result<Vec<PendingAnswer>> {
        let mut permits = Vec::with_capacity(bodies.len());
        for _ in bodies {
            let permit = self
                .in_flight
                .clone()
                .acquire_owned()
                .await
                .map_err(|_| self.disconnected())?;
            permits.push(permit);
        }
        let posted = self.post(version, bodies, true).await?;
        Ok(posted
            .into_iter()
            .zip(permits)
            .filter_map(|((correlation_id, answer), permit)| {
                Some(PendingAnswer {
                    connection: self.clone(),
                    correlation_id,
                    answer: answer?,
                    _permit: permit,
                })
            })
            .collect())
    }

    /// Writes requests nobody waits an answer for (Produce with acks=0),
    /// with as few system calls as the socket allows.
    pub(crate) async fn send_oneway(&self, version: i16, bodies: &[RequestBody]) -> Result<()> {
        self.post(version, bodies, false).await.map(drop)
    }

    /// Encodes requests under new correlation ids, registers a waiter for
    /// each when `answered`, and writes them all.
    async fn post(
        &self,
        version: i16,
        bodies: &[RequestBody],
        answered: bool,
    ) -> Result<Vec<(i32, Option<oneshot::Receiver<Result<ResponseBody>>>)>> {
        let mut frames = Vec::with_capacity(bodies.len());
        let mut posted = Vec::with_capacity(bodies.len());
        for body in bodies {
            let correlation_id = self.next_correlation_id.fetch_add(1, Ordering::Relaxed);
            frames.push(self.encode(correlation_id, version, body)?);
            posted.push((correlation_id, None));
        }
        if answered {
            let mut pending = self.pending.lock().map_err(|_| self.disconnected())?;
            if pending.closed.is_some() {
                return Err(self.disconnected());
            }
            for ((correlation_id, answer), body) in posted.iter_mut().zip(bodies) {
                let (reply, receiver) = oneshot::channel();
                pending.waiters.insert(
                    *correlation_id,
                    Waiter {
                        api: body.api_key(),
                        version,
                        reply,
                    },
                );
                *answer = Some(receiver);
            }
        }
        if let Err(error) = self.write(&frames).await {
            for (correlation_id, _) in &posted {
                self.forget(*correlation_id);
            }
            return Err(error);
        }
        Ok(posted)
    }

    /// Waits for the answer to a written request, up to `timeout`.
    async fn answer(
        &self,
        correlation_id: i32,
        answer: oneshot::Receiver<Result<ResponseBody>>,
        timeout: Duration,
    ) -> Result<ResponseBody> {
        match tokio::time::timeout(timeout, answer).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(self.disconnected()),
            Err(_) => {
                self.forget(correlation_id);
                Err(Error::Timeout {
                    addr: self.addr.clone(),
                    timeout_ms: timeout.as_millis() as u64,
                })
            }
        }
    }

    fn encode(&self, correlation_id: i32, version: i16, body: &RequestBody) -> Result<Bytes> {
        let api = body.api_key();
        let header = RequestHeader {
            request_api_key: api as i16,
            request_api_version: version,
            correlation_id,
            client_id: Some(self.client_id.clone()),
            ..Default::default()
        };
        let header_version = api.request_header_version(version);
        let encode_error = |error: rill_protocol::EncodeError| Error::Protocol {
            addr: self.addr.clone(),
            reason: format!("cannot encode {} v{version}: {error}", api.name()),
        };
        let len = header.encoded_len(header_version).map_err(encode_error)?
            + body.encoded_len(version).map_err(encode_error)?;
        let mut encoder = Encoder::with_capacity(len + 4);
        encoder.put_i32(len as i32);
        header
            .encode(&mut encoder, header_version)
            .map_err(encode_error)?;
        body.encode(&mut encoder, version).map_err(encode_error)?;
        Ok(encoder.finish().buf)
    }

    /// Writes whole frames, several per system call (`writev`).
    async fn write(&self, frames: &[Bytes]) -> Result<()> {
        let mut writer = self.writer.lock().await;
        let mut slices: Vec<IoSlice<'_>> = frames.iter().map(|frame| IoSlice::new(frame)).collect();
        let mut unwritten = &mut slices[..];
        while !unwritten.is_empty() {
            // Linux takes at most IOV_MAX (1024) slices per call.
            let take = unwritten.len().min(1024);
            let written = match writer.write_vectored(&unwritten[..take]).await {
                Ok(0) => Err(io::Error::from(io::ErrorKind::WriteZero)),
                other => other,
            };
            let written = written.map_err(|source| {
                self.close(format!("write failed: {source}"));
                Error::Io {
                    addr: self.addr.clone(),
                    source,
                }
            })?;
            IoSlice::advance_slices(&mut unwritten, written);
        }
        Ok(())
    }

    fn forget(&self, correlation_id: i32) {
        if let Ok(mut pending) = self.pending.lock() {
            pending.waiters.remove(&correlation_id);
        }
    }

    fn close(&self, reason: String) {
        close_pending(&self.pending, &self.addr, reason);
    }

    fn disconnected(&self) -> Error {
        Error::Disconnected {
            addr: self.addr.clone(),
        }
    }

    fn protocol_error(&self, reason: &str) -> Error {
        Error::Protocol {
            addr: self.addr.clone(),
            reason: reason.to_string(),
        }
    }
}

/// A request on the wire whose answer is still to come
/// ([`Connection::write_requests`]).
pub(crate) struct PendingAnswer {
    connection: Arc<Connection>,
    correlation_id: i32,
    answer: oneshot::Receiver<Result<ResponseBody>>,
    /// Holds the request's place among the connection's `IN_FLIGHT_MAX`.
    _permit: OwnedSemaphorePermit,
}

impl PendingAnswer {
    /// Waits for the answer, up to the connection's request timeout.
    pub(crate) async fn wait(self) -> Result<ResponseBody> {
        let timeout = self.connection.request_timeout;
        self.connection
            .answer(self.correlation_id, self.answer, timeout)
            .await
    }
}

fn close_pending(pending: &Mutex<Pending>, addr: &str, reason: String) {
    let waiters = match pending.lock() {
        Ok(mut pending) => {
            if pending.closed.is_none() {
                pending.closed = Some(reason.clone());
            }
            std::mem::take(&mut pending.waiters)
        }
        Err(_) => return,
    };
    if !waiters.is_empty() {
        tracing::debug!(%addr, %reason, waiting = waiters.len(), "connection lost");
    }
    // A lost connection is retriable: the caller reconnects and sends again.
    for (_, waiter) in waiters {
        let _ = waiter.reply.send(Err(Error::Disconnected {
            addr: addr.to_string(),
        }));
    }
}

async fn read_responses(mut reader: OwnedReadHalf, pending: Arc<Mutex<Pending>>, addr: String) {
    let reason = loop {
        let len = match reader.read_i32().await {
            Ok(len) => len,
            Err(error) => break format!("connection closed: {error}"),
        };
        if len < 4 || len as usize > RESPONSE_BYTES_MAX {
            break format!("response frame of {len} bytes is outside 4..={RESPONSE_BYTES_MAX}");
        }
        let frame = match read_frame(&mut reader, len as usize).await {
            Ok(frame) => frame,
            Err(error) => break format!("connection closed mid-response: {error}"),
        };
        let correlation_id = i32::from_be_bytes([frame[0], frame[1], frame[2], frame[3]]);
        let waiter = match pending.lock() {
            Ok(mut pending) => pending.waiters.remove(&correlation_id),
            Err(_) => break "connection state poisoned".to_string(),
        };
        // A waiter that gave up (timeout) leaves an answer nobody reads.
        let Some(waiter) = waiter else { continue };
        let result =
            decode_response(frame, waiter.api, waiter.version).map_err(|reason| Error::Protocol {
                addr: addr.clone(),
                reason,
            });
        let _ = waiter.reply.send(result);
    };
    close_pending(&pending, &addr, reason);
}

/// Reads a response of `len` bytes into a buffer that is not zeroed first:
/// a fetch response is up to `fetch_max_bytes`, and zeroing each one was
/// ~4 % of the consumer's thread in `rill bench e2e` at 1.5 M msg/s.
async fn read_frame(reader: &mut OwnedReadHalf, len: usize) -> io::Result<Bytes> {
    let mut frame = BytesMut::with_capacity(len);
    while frame.len() < len {
        let want = (len - frame.len()) as u64;
        if (&mut *reader).take(want).read_buf(&mut frame).await? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
    }
    Ok(frame.freeze())
}

fn decode_response(
    frame: Bytes,
    api: ApiKey,
    version: i16,
) -> std::result::Result<ResponseBody, String> {
    let decode = |version: i16| {
        let mut decoder = Decoder::new(frame.clone());
        ResponseHeader::decode(&mut decoder, api.response_header_version(version))
            .and_then(|_| ResponseBody::decode(api, version, &mut decoder))
    };
    match decode(version) {
        Ok(body) => Ok(body),
        // A broker that does not know our ApiVersions version answers in v0
        // (KIP-511), with the list of versions it does know.
        Err(_) if api == ApiKey::ApiVersions && version > 0 => {
            decode(0).map_err(|error| format!("cannot decode {} v0: {error}", api.name()))
        }
        Err(error) => Err(format!("cannot decode {} v{version}: {error}", api.name())),
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.close("connection dropped".into());
    }
}
