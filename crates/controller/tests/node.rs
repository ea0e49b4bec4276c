//! A lone voter as `rill serve` runs it: made on a new directory, leading
//! at once, taking proposals, refusing what cannot be a log entry, and
//! opening again with its state.

use std::collections::BTreeMap;
use std::time::Instant;

use rill_controller::{Node, NodeConfig, NodeError, ProposeError};
use rill_metadata::{MetadataRecord, TopicId};

fn topic(name: &str, n: u8, partitions: i32) -> MetadataRecord {
    MetadataRecord::TopicCreated {
        name: name.to_string(),
        id: TopicId([n; 16]),
        partitions,
        configs: BTreeMap::new(),
        assignments: vec![vec![1]; partitions as usize],
    }
}

#[tokio::test]
async fn a_lone_voter_leads_takes_proposals_and_keeps_them() {
    let dir = tempfile::tempdir().unwrap();
    let config = NodeConfig::default();
    let node = Node::open_single(dir.path(), 1, &config).await.unwrap();
    let first = node.propose(vec![topic("a", 1, 3)]).await.unwrap();
    let second = node.propose(vec![topic("b", 2, 1)]).await.unwrap();
    assert_eq!(second, first + 1);

    // A batch that does not apply changes nothing and says why.
    let refused = node.propose(vec![topic("c", 3, 1), topic("a", 4, 1)]).await;
    assert!(
        matches!(&refused, Err(ProposeError::Refused(why)) if why.contains("already exists")),
        "{refused:?}"
    );
    // One too large for a log entry is refused before it is appended.
    let huge = vec![topic("huge", 5, 2_000_000)];
    assert!(matches!(
        node.propose(huge).await,
        Err(ProposeError::TooLarge(_))
    ));
    let image = node.subscribe().borrow().image.clone();
    let names: Vec<&str> = image.topics().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["a", "b"]);
    node.shutdown().await;
    drop(node);

    let started = Instant::now();
    let node = Node::open_single(dir.path(), 1, &config).await.unwrap();
    let leading = started.elapsed();
    let image = node.subscribe().borrow().image.clone();
    let names: Vec<&str> = image.topics().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["a", "b"]);
    let third = node.propose(vec![topic("c", 3, 1)]).await.unwrap();
    assert!(third > second, "{third} after {second}");
    // Not a timing assertion: printed for the reader of the test output.
    println!("the reopened voter led after {leading:?}");
    node.shutdown().await;
}

/// The directory of node 1 is not node 2's quorum.
#[tokio::test]
async fn another_node_id_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let config = NodeConfig::default();
    let node = Node::open_single(dir.path(), 1, &config).await.unwrap();
    node.shutdown().await;
    drop(node);
    let refused = Node::open_single(dir.path(), 2, &config).await;
    assert!(
        matches!(&refused, Err(NodeError::OtherVoters { voters, .. }) if voters == &[1]),
        "{:?}",
        refused.err()
    );
}
