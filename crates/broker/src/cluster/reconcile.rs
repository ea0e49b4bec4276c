//! The broker's topic handles and partition logs made to match the applied
//! metadata: the image the controller quorum publishes is the truth, and
//! this is the one place that turns its changes into open logs, deleted
//! directories and new log settings.
//!
//! Each pass compares the image it last matched with the newest one, topic
//! by topic (`Arc::ptr_eq` skips the unchanged): removed topics first (a
//! name may be deleted and created again between two passes), then new
//! ones, then grown or reconfigured ones. Passes are serialized by the
//! `reconciled` lock; file work runs off the async workers.

use std::collections::HashMap;
use std::sync::Arc;

use rill_log::LogManager;
use rill_metadata::{ClusterState, Topic, TopicId};

use super::{Cluster, TopicHandle, open_topic, write_lock};
use crate::log_config::log_config;
use crate::partition_dirs;

/// What the topic handles were last made to match.
pub(super) struct Reconciled {
    pub image: Arc<ClusterState>,
    /// Why the logs of a topic in the image did not open, by topic id,
    /// until the topic opens or is deleted.
    pub failed: HashMap<TopicId, String>,
}

/// The topics that differ between two images.
#[derive(Default)]
struct Diff {
    removed: Vec<Arc<Topic>>,
    added: Vec<Arc<Topic>>,
    /// The old and the new version of a topic that changed.
    changed: Vec<(Arc<Topic>, Arc<Topic>)>,
}

fn diff(old: &ClusterState, new: &ClusterState) -> Diff {
    let mut diff = Diff::default();
    for topic in old.topics() {
        if new.topic_by_id(topic.id).is_none() {
            diff.removed.push(topic.clone());
        }
    }
    for topic in new.topics() {
        match old.topic_by_id(topic.id) {
            None => diff.added.push(topic.clone()),
            Some(before) if !Arc::ptr_eq(before, topic) => {
                diff.changed.push((before.clone(), topic.clone()));
            }
            Some(_) => {}
        }
    }
    diff
}

impl Cluster {
    /// Makes the topic handles match the newest applied image.
    pub(super) async fn reconcile(&self) {
        let mut reconciled = self.reconciled.lock().await;
        let image = self.quorum.node.image();
        if Arc::ptr_eq(&reconciled.image, &image) {
            return;
        }
        let diff = diff(&reconciled.image, &image);
        for topic in &diff.removed {
            reconciled.failed.remove(&topic.id);
            self.remove_topic(topic).await;
        }
        for topic in &diff.added {
            match self.open_partitions(&image, topic, None).await {
                Ok(()) => reconciled.failed.remove(&topic.id),
                Err(reason) => reconciled.failed.insert(topic.id, reason),
            };
        }
        for (before, topic) in &diff.changed {
            if topic.partitions.len() > before.partitions.len() {
                let result = self.open_partitions(&image, topic, Some(before)).await;
                if let Err(reason) = result {
                    reconciled.failed.insert(topic.id, reason);
                }
            }
            if topic.configs != before.configs {
                self.reconfigure(topic);
            }
        }
        reconciled.image = image;
    }

    /// Reconciles each newly applied image until `stop`: the changes made
    /// through other nodes of the quorum (a change made here is reconciled
    /// by the request that made it, before it is answered).
    pub async fn follow_metadata(&self, mut stop: tokio::sync::watch::Receiver<bool>) {
        let mut published = self.quorum.node.subscribe();
        loop {
            tokio::select! {
                changed = published.changed() => if changed.is_err() { return },
                _ = stop.wait_for(|stop| *stop) => return,
            }
            self.reconcile().await;
        }
    }

    /// Why the logs of topic `id` did not open at the last pass, if they did not.
    pub(super) async fn open_failure(&self, id: TopicId) -> Option<String> {
        self.reconciled.lock().await.failed.get(&id).cloned()
    }

    /// Drops a deleted topic's handle, then renames its directories away
    /// (`LogManager::delete`). A directory left behind is removed at the
    /// next start: the topic's id is among the deleted ones.
    async fn remove_topic(&self, topic: &Topic) {
        {
            let mut topics = write_lock(&self.topics);
            if topics
                .by_name
                .get(&topic.name)
                .is_some_and(|h| h.id == topic.id)
            {
                topics.remove(&topic.name);
            }
        }
        if self.keep_deleted_files() {
            return;
        }
        let name = topic.name.clone();
        let partitions = topic.partition_count();
        let deleted = self
            .blocking(move |logs: &LogManager| {
                (0..partitions).try_for_each(|partition| logs.delete(&name, partition))
            })
            .await;
        match deleted {
            Ok(Ok(())) => tracing::info!(topic = topic.name, "deleted topic"),
            Ok(Err(error)) => {
                tracing::warn!(topic = topic.name, %error, "topic deleted, but not all its files");
            }
            Err(error) => tracing::warn!(topic = topic.name, %error, "deleting a topic's files"),
        }
    }

    /// Opens the logs of a new topic, or of the partitions a topic gained
    /// since `before`, and swaps in its handle.
    async fn open_partitions(
        &self,
        image: &Arc<ClusterState>,
        topic: &Arc<Topic>,
        before: Option<&Arc<Topic>>,
    ) -> Result<(), String> {
        let first = before.map_or(0, |b| b.partition_count());
        let new = first..topic.partition_count();
        let config = self.config.clone();
        let (name, id, configs) = (topic.name.clone(), topic.id, topic.configs.clone());
        let image = image.clone();
        let opened = self
            .blocking(move |logs: &LogManager| {
                let was_deleted = move |id| image.was_deleted(id);
                partition_dirs::prepare_new(logs, &name, id, new.clone(), was_deleted)?;
                // Only the new partitions: an existing log's high watermark
                // is not moved to its end here, past appends still waiting
                // for their sync round.
                open_topic(logs, &config, &name, id, new, &configs)
            })
            .await
            .map_err(|e| e.message)?;
        let handle = match opened {
            Ok(handle) => handle,
            Err(error) => {
                tracing::error!(topic = topic.name, %error, "cannot open a topic's partitions");
                return Err(error.to_string());
            }
        };
        let mut topics = write_lock(&self.topics);
        let mut partitions = match topics.by_name.get(&topic.name) {
            // Keep the existing partitions (and their waiting fetches).
            Some(existing) if existing.id == topic.id && before.is_some() => {
                existing.partitions.clone()
            }
            _ => Vec::new(),
        };
        partitions.extend(handle.partitions);
        topics.insert(Arc::new(TopicHandle {
            partitions,
            ..handle
        }));
        if before.is_none() {
            tracing::info!(
                topic = topic.name,
                partitions = topic.partition_count(),
                "created topic"
            );
        }
        Ok(())
    }

    /// Gives a topic's logs and handle its new settings.
    fn reconfigure(&self, topic: &Topic) {
        let mut topics = write_lock(&self.topics);
        let Some(existing) = topics.by_name.get(&topic.name).cloned() else {
            return;
        };
        if existing.id != topic.id {
            return;
        }
        let new_config = log_config(&self.config, &topic.configs);
        for partition in &existing.partitions {
            partition.log.update_config(new_config.clone());
        }
        topics.insert(Arc::new(TopicHandle {
            name: existing.name.clone(),
            id: existing.id,
            partitions: existing.partitions.clone(),
            append_may_sync: new_config.flush_messages.is_some(),
            overrides: topic.configs.clone(),
            internal: existing.internal,
        }));
    }
}
