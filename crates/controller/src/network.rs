//! openraft's network over channels the broker provides: each Raft message
//! becomes a [`PeerRequest`] sent on a [`Channel`] to the target, whose
//! answer is the message's response. Heartbeats, replication and snapshots
//! each get a channel of their own, so a snapshot in transit never delays
//! the heartbeats that keep a leader in office.

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use openraft::errors::{RPCError, ReplicationClosed, StreamingError, Unreachable};
use openraft::network::RPCOption;
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, TransferLeaderRequest,
    TransferLeaderResponse, VoteRequest, VoteResponse,
};
use openraft::{BasicNode, OptionalSend, RaftNetworkFactory, RaftNetworkV2};

use crate::state_machine::Snapshot;
use crate::types::{TypeConfig, Vote};
use crate::wire::{PeerRequest, PeerResponse};

/// A connection to one peer: it says Hello when it connects, and
/// reconnects after a failure.
pub trait Channel: Send + Sync + 'static {
    /// Sends `request` and waits at most `timeout` for its answer.
    fn call(
        &mut self,
        request: PeerRequest,
        timeout: Duration,
    ) -> impl Future<Output = io::Result<PeerResponse>> + Send;
}

/// Makes channels to peers by node id.
pub trait Dialer: Send + Sync + 'static {
    type Channel: Channel;
    fn dial(&self, target: u64) -> Self::Channel;
}

/// The network factory openraft is given.
pub struct Network<D> {
    dialer: Arc<D>,
}

impl<D> Network<D> {
    pub fn new(dialer: Arc<D>) -> Network<D> {
        Network { dialer }
    }
}

impl<D: Dialer> RaftNetworkFactory<TypeConfig> for Network<D> {
    type Network = Peer<D::Channel>;

    async fn new_client(&mut self, target: u64, _node: &BasicNode) -> Self::Network {
        Peer {
            channel: self.dialer.dial(target),
        }
    }
}

/// One channel to one peer, as openraft's client.
pub struct Peer<C> {
    channel: C,
}

fn unreachable(error: &io::Error) -> Unreachable<TypeConfig> {
    Unreachable::new(error)
}

fn unexpected(response: PeerResponse) -> io::Error {
    match response {
        PeerResponse::Refused(why) | PeerResponse::Failed(why) => io::Error::other(why),
        other => io::Error::other(format!("an answer of another kind: {other:?}")),
    }
}

impl<C: Channel> Peer<C> {
    /// Sends `request` and takes the answer `pick` expects; any failure is
    /// the peer being unreachable, so openraft backs off and retries.
    async fn call<T>(
        &mut self,
        request: PeerRequest,
        option: &RPCOption,
        pick: impl FnOnce(PeerResponse) -> Result<T, PeerResponse>,
    ) -> Result<T, Unreachable<TypeConfig>> {
        match self.channel.call(request, option.soft_ttl()).await {
            Ok(response) => pick(response).map_err(|other| unreachable(&unexpected(other))),
            Err(e) => Err(unreachable(&e)),
        }
    }
}

impl<C: Channel> RaftNetworkV2<TypeConfig> for Peer<C> {
    type SnapshotData = Vec<u8>;

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<TypeConfig>, RPCError<TypeConfig>> {
        let pick = |r| match r {
            PeerResponse::Append(response) => Ok(response),
            other => Err(other),
        };
        let answer = self.call(PeerRequest::Append(rpc), &option, pick).await;
        answer.map_err(RPCError::Unreachable)
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        let answer = self.call(PeerRequest::Vote(rpc), &option, vote).await;
        answer.map_err(RPCError::Unreachable)
    }

    async fn pre_vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        let answer = self.call(PeerRequest::PreVote(rpc), &option, vote).await;
        answer.map_err(RPCError::Unreachable)
    }

    async fn transfer_leader(
        &mut self,
        rpc: TransferLeaderRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<TransferLeaderResponse<TypeConfig>, RPCError<TypeConfig>> {
        let pick = |r| match r {
            PeerResponse::TransferLeader(response) => Ok(response),
            other => Err(other),
        };
        let answer = self
            .call(PeerRequest::TransferLeader(rpc), &option, pick)
            .await;
        answer.map_err(RPCError::Unreachable)
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: Snapshot,
        _cancel: impl Future<Output = ReplicationClosed> + OptionalSend + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        let request = PeerRequest::Snapshot {
            vote,
            meta: snapshot.meta,
            data: snapshot.snapshot,
        };
        let pick = |r| match r {
            PeerResponse::Snapshot(response) => Ok(response),
            other => Err(other),
        };
        let answer = self.call(request, &option, pick).await;
        answer.map_err(StreamingError::Unreachable)
    }
}

/// A vote or pre-vote's answer.
fn vote(response: PeerResponse) -> Result<VoteResponse<TypeConfig>, PeerResponse> {
    match response {
        PeerResponse::Vote(response) => Ok(response),
        other => Err(other),
    }
}
