//! Controllers reaching each other: the frames on the controller listener
//! and the channels this node opens to its peers.
//!
//! A frame is Kafka's: a 4-byte size, then a request header (API key
//! [`PEER_API_KEY`], version, correlation id, no client id) and the peer
//! message ([`rill_controller::wire`]), or a response header (correlation
//! id) and the answer. Every connection starts with a Hello, checked by the
//! listener (`controller_listener.rs`): a peer of another cluster, or one
//! that meant to reach another node, is refused before any Raft message.

use std::collections::BTreeMap;
use std::io;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use rill_controller::active::ActiveController;
use rill_controller::network::{Channel, Dialer};
use rill_controller::wire::{Hello, PEER_API_KEY, PEER_API_VERSION, PeerRequest, PeerResponse};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;

/// Largest peer frame: a snapshot of the largest state (256 MiB, see
/// `rill_controller::snapshot_store`) and its header. Frames are read as
/// their bytes arrive, never allocated whole from the size alone.
pub const PEER_FRAME_MAX: usize = 260 << 20;

/// Time to connect and say Hello to a peer.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// What this node knows of itself when it meets a peer.
pub struct Identity {
    pub node_id: u64,
    /// The cluster id from `meta.properties`, or learnt from the metadata.
    pub cluster_id: watch::Receiver<Option<String>>,
    /// The node's controller task, once the cluster has formed.
    pub controller: OnceLock<ActiveController>,
}

/// Reads one frame's bytes after its size.
pub async fn read_frame(stream: &mut (impl AsyncRead + Unpin)) -> io::Result<Vec<u8>> {
    let size = stream.read_i32().await?;
    let size = usize::try_from(size)
        .ok()
        .filter(|size| (8..=PEER_FRAME_MAX).contains(size))
        .ok_or_else(|| io::Error::other(format!("a peer frame of {size} bytes")))?;
    let mut frame = Vec::new();
    (&mut *stream)
        .take(size as u64)
        .read_to_end(&mut frame)
        .await?;
    if frame.len() < size {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    Ok(frame)
}

/// A request frame: size, header v1 with a null client id, message.
pub fn request_frame(correlation_id: i32, message: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(14 + message.len());
    let size = (10 + message.len()) as i32;
    frame.extend_from_slice(&size.to_be_bytes());
    frame.extend_from_slice(&PEER_API_KEY.to_be_bytes());
    frame.extend_from_slice(&PEER_API_VERSION.to_be_bytes());
    frame.extend_from_slice(&correlation_id.to_be_bytes());
    frame.extend_from_slice(&(-1i16).to_be_bytes());
    frame.extend_from_slice(message);
    frame
}

/// A response frame: size, correlation id, message.
pub fn response_frame(correlation_id: i32, message: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(8 + message.len());
    frame.extend_from_slice(&((4 + message.len()) as i32).to_be_bytes());
    frame.extend_from_slice(&correlation_id.to_be_bytes());
    frame.extend_from_slice(message);
    frame
}

/// The peers of this node, by id, and their controller addresses.
pub struct TcpDialer {
    identity: Arc<Identity>,
    addresses: BTreeMap<u64, String>,
    /// The last refusal a peer answered a Hello with, for the start to
    /// stop on.
    refused: watch::Sender<Option<String>>,
}

impl TcpDialer {
    pub fn new(identity: Arc<Identity>, addresses: BTreeMap<u64, String>) -> TcpDialer {
        TcpDialer {
            identity,
            addresses,
            refused: watch::channel(None).0,
        }
    }

    /// Refusals peers answered, newest last.
    pub fn refusals(&self) -> watch::Receiver<Option<String>> {
        self.refused.subscribe()
    }
}

impl Dialer for TcpDialer {
    type Channel = TcpChannel;

    fn dial(&self, target: u64) -> TcpChannel {
        TcpChannel {
            identity: self.identity.clone(),
            target,
            address: self.addresses.get(&target).cloned(),
            refused: self.refused.clone(),
            stream: None,
            correlation_id: 0,
        }
    }
}

/// One connection to one peer, made when first used and again after a
/// failure.
pub struct TcpChannel {
    identity: Arc<Identity>,
    target: u64,
    address: Option<String>,
    refused: watch::Sender<Option<String>>,
    stream: Option<TcpStream>,
    correlation_id: i32,
}

impl TcpChannel {
    async fn exchange(&mut self, request: &PeerRequest) -> io::Result<PeerResponse> {
        let Some(stream) = self.stream.as_mut() else {
            return Err(io::ErrorKind::NotConnected.into());
        };
        self.correlation_id = self.correlation_id.wrapping_add(1);
        let frame = request_frame(self.correlation_id, &request.encode());
        stream.write_all(&frame).await?;
        let answer = read_frame(stream).await?;
        let (correlation, message) = answer
            .split_first_chunk::<4>()
            .ok_or_else(|| io::Error::other("a peer answer without its header"))?;
        if i32::from_be_bytes(*correlation) != self.correlation_id {
            return Err(io::Error::other("a peer answered another request"));
        }
        PeerResponse::decode(message)
    }

    async fn connect(&mut self) -> io::Result<()> {
        let Some(address) = self.address.clone() else {
            return Err(io::Error::other(format!(
                "node {} is not in the controller quorum",
                self.target
            )));
        };
        let stream = TcpStream::connect(&address).await?;
        stream.set_nodelay(true)?;
        self.stream = Some(stream);
        let hello = PeerRequest::Hello(Hello {
            cluster_id: self.identity.cluster_id.borrow().clone(),
            from: self.identity.node_id,
            to: self.target,
        });
        match self.exchange(&hello).await? {
            PeerResponse::Welcome { node, .. } if node == self.target => Ok(()),
            PeerResponse::Welcome { node, .. } => Err(self.refusal(format!(
                "the controller at {address} is node {node}, but the quorum names it as node {}",
                self.target
            ))),
            PeerResponse::Refused(why) => Err(self.refusal(format!(
                "node {} at {address} refused this node: {why}",
                self.target
            ))),
            other => Err(io::Error::other(format!(
                "node {} answered Hello with {other:?}",
                self.target
            ))),
        }
    }

    fn refusal(&self, why: String) -> io::Error {
        self.refused.send_replace(Some(why.clone()));
        io::Error::other(why)
    }
}

impl Channel for TcpChannel {
    async fn call(&mut self, request: PeerRequest, timeout: Duration) -> io::Result<PeerResponse> {
        if self.stream.is_none() {
            let connected =
                tokio::time::timeout(CONNECT_TIMEOUT.min(timeout), self.connect()).await;
            match connected {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    self.stream = None;
                    return Err(e);
                }
                Err(_) => {
                    self.stream = None;
                    return Err(io::ErrorKind::TimedOut.into());
                }
            }
        }
        match tokio::time::timeout(timeout, self.exchange(&request)).await {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(e)) => {
                self.stream = None;
                Err(e)
            }
            Err(_) => {
                // The answer may still come: the connection is out of step.
                self.stream = None;
                Err(io::ErrorKind::TimedOut.into())
            }
        }
    }
}
