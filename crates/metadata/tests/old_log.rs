//! A metadata log written by the single-node store before replica lists,
//! brokers and partition leadership were recorded still opens, and means
//! what it meant: every partition on the node that replays it.

use std::path::Path;

use rill_metadata::{MetadataRecord, MetadataStore, Partition, TopicId, snapshot};

/// Written by `MetadataStore` as it was before the cluster records: a
/// cluster id, `__consumer_offsets`, two more topics (one grown to 5
/// partitions, configs set and removed, one deleted) and two producer-id
/// blocks.
const OLD_LOG: &[u8] = include_bytes!("data/single-node-v1.log");

fn open_copy(dir: &Path, node_id: i32) -> MetadataStore {
    std::fs::write(dir.join("metadata.log"), OLD_LOG).unwrap();
    MetadataStore::open(dir, node_id).unwrap()
}

#[test]
fn an_old_log_opens_with_every_partition_on_this_node() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_copy(dir.path(), 3);
    let state = store.state();
    assert_eq!(state.cluster_id.as_deref(), Some("Tq-wuXKWRUa3g_7jEd8fFg"));
    let names: Vec<&str> = state.topics().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["__consumer_offsets", "orders"]);
    let offsets = state.topic("__consumer_offsets").unwrap();
    assert_eq!(offsets.id, TopicId([1; 16]));
    assert_eq!(offsets.partition_count(), 50);
    assert_eq!(offsets.configs["cleanup.policy"], "compact");
    let orders = state.topic("orders").unwrap();
    assert_eq!(orders.partition_count(), 5);
    assert_eq!(
        orders.configs.iter().collect::<Vec<_>>(),
        [(&"retention.ms".to_string(), &"60000".to_string())]
    );
    for partition in offsets.partitions.iter().chain(&orders.partitions) {
        assert_eq!(*partition, Partition::created(vec![3]));
        assert_eq!((partition.leader, partition.leader_epoch), (Some(3), 0));
    }
    assert!(state.topic("gone").is_none());
    assert!(state.was_deleted(TopicId([3; 16])));
    assert_eq!(state.next_producer_id, 2000);
    assert_eq!(state.brokers().count(), 0);
    // Nothing was cut or rewritten.
    assert_eq!(
        std::fs::read(dir.path().join("metadata.log")).unwrap(),
        OLD_LOG
    );
}

#[test]
fn an_old_log_takes_new_records_and_reopens() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = open_copy(dir.path(), 0);
    store
        .append(&[MetadataRecord::PartitionsCreated {
            id: TopicId([2; 16]),
            partitions: 6,
            assignments: vec![vec![0]],
        }])
        .unwrap();
    let before = store.state().clone();
    drop(store);
    let reopened = MetadataStore::open(dir.path(), 0).unwrap();
    assert_eq!(*reopened.state(), before);
    assert_eq!(
        reopened.state().topic("orders").unwrap().partition_count(),
        6
    );
}

#[test]
fn a_snapshot_of_an_old_log_names_its_replicas() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_copy(dir.path(), 3);
    let records = snapshot::records(store.state());
    assert_eq!(snapshot::restore(3, &records).unwrap(), *store.state());
    // Restored on another node, the partitions stay on node 3.
    let elsewhere = snapshot::restore(8, &records).unwrap();
    let topics = |state: &rill_metadata::ClusterState| {
        state.topics().map(|t| (**t).clone()).collect::<Vec<_>>()
    };
    assert_eq!(topics(&elsewhere), topics(store.state()));
}
