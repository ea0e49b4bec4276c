//! The controller listener: where the quorum's other voters reach this
//! node. A connection's first frame must be a Hello naming this node and,
//! when both ends know one, this node's cluster; after it, each Raft
//! message is answered by the node's Raft, in order.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use rill_controller::Node;
use rill_controller::wire::{
    BrokerError, Hello, PEER_API_KEY, PEER_API_VERSION, PeerRequest, PeerResponse,
};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};

use crate::peers::{Identity, read_frame, response_frame};

/// Connections open at once. Each voter holds a few to each other one
/// (replication, heartbeats, snapshots, elections); anything far beyond
/// that is not a peer.
const CONNECTIONS_MAX: usize = 64;

/// Time a new connection has to say Hello, and an established one may
/// stay silent (a leader sends heartbeats many times a second).
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

/// Accepts peers until `stop`.
pub async fn serve(
    listener: TcpListener,
    node: Node,
    identity: Arc<Identity>,
    mut stop: watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(CONNECTIONS_MAX));
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stop.wait_for(|stop| *stop) => return,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of descriptors, most likely: wait rather than spin.
                tracing::warn!(%error, "controller listener cannot accept");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::warn!(%peer, "controller listener full: connection closed");
            continue;
        };
        let (node, identity, stop) = (node.clone(), identity.clone(), stop.clone());
        tokio::spawn(async move {
            if let Err(error) = connection(stream, &node, &identity, stop).await {
                tracing::debug!(%peer, %error, "controller peer connection closed");
            }
            drop(slot);
        });
    }
}

async fn connection(
    mut stream: TcpStream,
    node: &Node,
    identity: &Identity,
    mut stop: watch::Receiver<bool>,
) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let mut greeted = false;
    loop {
        let wait = if greeted { IDLE_TIMEOUT } else { HELLO_TIMEOUT };
        let frame = tokio::select! {
            frame = tokio::time::timeout(wait, read_frame(&mut stream)) => {
                frame.map_err(|_| io::Error::from(io::ErrorKind::TimedOut))??
            }
            _ = stop.wait_for(|stop| *stop) => return Ok(()),
        };
        let (correlation_id, message) = parse_header(&frame)?;
        let request = PeerRequest::decode(message)?;
        let (response, close) = match (greeted, request) {
            (false, PeerRequest::Hello(hello)) => match check(&hello, identity) {
                Ok(()) => {
                    greeted = true;
                    let welcome = PeerResponse::Welcome {
                        node: identity.node_id,
                        cluster_id: identity.cluster_id.borrow().clone(),
                    };
                    (welcome, false)
                }
                Err(why) => {
                    tracing::warn!(from = hello.from, "refused a controller peer: {why}");
                    (PeerResponse::Refused(why), true)
                }
            },
            (false, _) => {
                let why = "a controller peer connection starts with Hello".to_string();
                (PeerResponse::Refused(why), true)
            }
            (true, PeerRequest::Hello(_)) => {
                (PeerResponse::Failed("Hello once, first".to_string()), true)
            }
            (true, PeerRequest::BrokerRegistration(registration)) => {
                let answer = match identity.controller.get() {
                    Some(controller) => controller.register(registration).await,
                    None => Err(forming()),
                };
                (PeerResponse::BrokerRegistered(answer), false)
            }
            (true, PeerRequest::BrokerHeartbeat(heartbeat)) => {
                let answer = match identity.controller.get() {
                    Some(controller) => controller.heartbeat(heartbeat).await,
                    None => Err(forming()),
                };
                (PeerResponse::BrokerHeartbeat(answer), false)
            }
            (true, request) => (node.answer(request).await, false),
        };
        let frame = response_frame(correlation_id, &response.encode());
        stream.write_all(&frame).await?;
        if close {
            return Ok(());
        }
    }
}

fn forming() -> BrokerError {
    BrokerError {
        code: rill_protocol::error_code::NOT_CONTROLLER,
        message: "the cluster is still forming".to_string(),
    }
}

/// The correlation id and message of a peer request frame; anything but
/// the peer API at this version closes the connection.
fn parse_header(frame: &[u8]) -> io::Result<(i32, &[u8])> {
    let bad = |why: &str| io::Error::new(io::ErrorKind::InvalidData, why.to_string());
    let header = frame
        .get(..10)
        .ok_or_else(|| bad("a frame shorter than its header"))?;
    let api_key = i16::from_be_bytes([header[0], header[1]]);
    let version = i16::from_be_bytes([header[2], header[3]]);
    let correlation_id = i32::from_be_bytes([header[4], header[5], header[6], header[7]]);
    let client_id_len = i16::from_be_bytes([header[8], header[9]]);
    if api_key != PEER_API_KEY || version != PEER_API_VERSION {
        return Err(bad("not a controller peer request of this version"));
    }
    let skip = 10 + usize::try_from(client_id_len).unwrap_or(0);
    let message = frame
        .get(skip..)
        .ok_or_else(|| bad("a client id past the frame's end"))?;
    Ok((correlation_id, message))
}

/// Why a Hello is refused, in one sentence for the operator.
fn check(hello: &Hello, identity: &Identity) -> Result<(), String> {
    let me = identity.node_id;
    if hello.to != me {
        return Err(format!(
            "this is node {me}, not node {}: the quorum entry for node {} points at node {me}'s \
             controller listener",
            hello.to, hello.to
        ));
    }
    if hello.from == me {
        return Err(format!("node {me} called itself"));
    }
    let mine = identity.cluster_id.borrow().clone();
    if let (Some(theirs), Some(mine)) = (&hello.cluster_id, &mine)
        && theirs != mine
    {
        return Err(format!(
            "node {} belongs to cluster {theirs}, and node {me} to cluster {mine}",
            hello.from
        ));
    }
    Ok(())
}
