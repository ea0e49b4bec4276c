//! Three `rill serve` processes on loopback ports forming one controller
//! quorum: the cluster forms with one id, a topic created through the
//! active controller is in every node's metadata, a kill -9 of the active
//! controller elects another that takes changes, the killed node rejoins,
//! and a node whose data directory is of another cluster is refused.
//!
//! Clients here are `rill` commands; real Kafka clients against a cluster
//! come with partitions placed across brokers.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const RILL: &str = env!("CARGO_BIN_EXE_rill");
/// Generous bounds for a shared two-core machine; the test never sleeps
/// for them, it polls until the condition holds or the bound passes.
const FORM_WITHIN: Duration = Duration::from_secs(30);
const FAILOVER_WITHIN: Duration = Duration::from_secs(15);

/// A free loopback port (bound, then released for the node to take).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Node {
    id: u32,
    kafka: u16,
    admin: u16,
    data_dir: PathBuf,
    child: Option<Child>,
}

struct Cluster {
    root: PathBuf,
    quorum: String,
    nodes: Vec<Node>,
}

impl Cluster {
    fn new(name: &str) -> Cluster {
        let root = std::env::temp_dir().join(format!("rill-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let controllers: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let quorum = controllers
            .iter()
            .enumerate()
            .map(|(i, port)| format!("{}@127.0.0.1:{port}", i + 1))
            .collect::<Vec<_>>()
            .join(",");
        let nodes = (1..=3)
            .map(|id| Node {
                id,
                kafka: free_port(),
                admin: free_port(),
                data_dir: root.join(format!("d{id}")),
                child: None,
            })
            .collect();
        Cluster {
            root,
            quorum,
            nodes,
        }
    }

    fn command(&self, index: usize, data_dir: &Path) -> Command {
        let node = &self.nodes[index];
        let mut command = Command::new(RILL);
        command
            .arg("serve")
            .args(["--node-id", &node.id.to_string()])
            .args(["--listen", &format!("127.0.0.1:{}", node.kafka)])
            .args(["--admin-listen", &format!("127.0.0.1:{}", node.admin)])
            .args(["--controller-quorum", &self.quorum])
            .arg("--data-dir")
            .arg(data_dir)
            .env("RILL_LOG", "warn")
            // A killed broker is fenced within two seconds.
            .env("RILL_BROKER_SESSION_TIMEOUT_MS", "2000")
            .env("RILL_BROKER_HEARTBEAT_INTERVAL_MS", "500")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        command
    }

    fn start(&mut self, index: usize) {
        let data_dir = self.nodes[index].data_dir.clone();
        let child = self.command(index, &data_dir).spawn().unwrap();
        self.nodes[index].child = Some(child);
    }

    fn kill(&mut self, index: usize) {
        if let Some(mut child) = self.nodes[index].child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    fn bootstrap(&self, index: usize) -> String {
        format!("127.0.0.1:{}", self.nodes[index].kafka)
    }

    /// `rill cluster info` through node `index`: the cluster id and the
    /// controller it names, once it answers.
    fn info(&self, index: usize) -> Option<(String, u32)> {
        let output = rill(&["cluster", "info", "-b", &self.bootstrap(index)]);
        if !output.status.success() {
            return None;
        }
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        let field = |name: &str| {
            text.lines()
                .find_map(|line| line.strip_prefix(name))
                .map(|value| value.trim().to_string())
        };
        Some((field("CLUSTER")?, field("CONTROLLER")?.parse().ok()?))
    }

    /// The broker ids node `index` offers clients (the unfenced ones).
    fn brokers(&self, index: usize) -> Vec<u32> {
        let output = rill(&["cluster", "info", "-b", &self.bootstrap(index)]);
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        let mut ids: Vec<u32> = text
            .lines()
            .skip_while(|line| !line.starts_with("ID "))
            .skip(1)
            .take_while(|line| !line.is_empty())
            .filter_map(|line| line.split_whitespace().next()?.parse().ok())
            .collect();
        ids.sort_unstable();
        ids
    }

    /// The voter lines of `rill cluster info` through node `index`: each
    /// voter's id and whether its broker is fenced.
    fn voters(&self, index: usize) -> Vec<(u32, bool)> {
        let output = rill(&["cluster", "info", "-b", &self.bootstrap(index)]);
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        text.lines()
            .skip_while(|line| !line.starts_with("VOTER "))
            .skip(1)
            .filter_map(|line| {
                let id = line.split_whitespace().next()?.parse().ok()?;
                Some((id, line.ends_with(" fenced")))
            })
            .collect()
    }

    /// Waits until every running node offers exactly `ids`.
    fn wait_for_brokers(&self, ids: &[u32], within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let seen: Vec<Vec<u32>> = self.running().iter().map(|i| self.brokers(*i)).collect();
            if seen.iter().all(|brokers| brokers == ids) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "brokers {seen:?}, not {ids:?}, after {within:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn topics(&self, index: usize) -> Vec<String> {
        let output = rill(&["topic", "list", "-b", &self.bootstrap(index)]);
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .skip(1)
            .filter_map(|line| line.split_whitespace().next().map(str::to_string))
            .collect()
    }

    fn create_topic(&self, index: usize, name: &str) -> bool {
        rill(&[
            "topic",
            "create",
            name,
            "-p",
            "2",
            "-b",
            &self.bootstrap(index),
        ])
        .status
        .success()
    }

    fn running(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|i| self.nodes[*i].child.is_some())
            .collect()
    }

    /// The controller every running node names, once they agree on one
    /// that is running (node ids are 1-based, indexes 0-based).
    fn agreed_controller(&self, within: Duration) -> (String, usize) {
        let deadline = Instant::now() + within;
        loop {
            let answers: Vec<Option<(String, u32)>> =
                self.running().iter().map(|i| self.info(*i)).collect();
            if let Some(Some((cluster, controller))) = answers.first()
                && answers
                    .iter()
                    .all(|a| a.as_ref() == Some(&(cluster.clone(), *controller)))
                && self.running().contains(&(*controller as usize - 1))
            {
                return (cluster.clone(), *controller as usize - 1);
            }
            assert!(
                Instant::now() < deadline,
                "no agreed controller within {within:?}: {answers:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn wait_for_topic(&self, index: usize, name: &str, within: Duration) {
        let deadline = Instant::now() + within;
        while !self.topics(index).iter().any(|t| t == name) {
            assert!(
                Instant::now() < deadline,
                "node {} does not list {name} within {within:?}",
                index + 1
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for index in 0..self.nodes.len() {
            self.kill(index);
        }
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

fn rill(args: &[&str]) -> Output {
    Command::new(RILL).args(args).output().unwrap()
}

#[test]
fn three_nodes_form_a_quorum_that_survives_its_controller() {
    let mut cluster = Cluster::new("quorum");
    for index in 0..3 {
        cluster.start(index);
    }
    let (cluster_id, controller) = cluster.agreed_controller(FORM_WITHIN);
    cluster.wait_for_brokers(&[1, 2, 3], FORM_WITHIN);
    for node in &cluster.nodes {
        let properties = std::fs::read_to_string(node.data_dir.join("meta.properties")).unwrap();
        assert!(
            properties.contains(&format!("cluster.id={cluster_id}\n")),
            "{properties}"
        );
    }

    // Created through a node that is not the controller (the change is
    // forwarded to it), listed by every node within a second.
    assert!(cluster.create_topic((controller + 1) % 3, "first"));
    for index in 0..3 {
        cluster.wait_for_topic(index, "first", Duration::from_secs(1));
    }

    // The active controller dies: another takes over and takes changes.
    cluster.kill(controller);
    let killed = Instant::now();
    let (same_id, next) = cluster.agreed_controller(FAILOVER_WITHIN);
    assert_eq!(same_id, cluster_id);
    assert_ne!(next, controller);
    let deadline = Instant::now() + FAILOVER_WITHIN;
    while !cluster.create_topic(next, "second") {
        assert!(
            Instant::now() < deadline,
            "no change accepted after the failover"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    println!(
        "kill -9 of the controller to a change accepted: {:?}",
        killed.elapsed()
    );
    // Its broker stops heartbeating and is fenced: no node offers it.
    let alive: Vec<u32> = (1..=3)
        .filter(|id| *id as usize - 1 != controller)
        .collect();
    cluster.wait_for_brokers(&alive, FAILOVER_WITHIN);

    // The killed node comes back, follows, has what it missed, and is
    // unfenced.
    cluster.start(controller);
    cluster.wait_for_topic(controller, "second", FORM_WITHIN);
    assert_eq!(cluster.agreed_controller(FORM_WITHIN).0, cluster_id);
    cluster.wait_for_brokers(&[1, 2, 3], FORM_WITHIN);

    // A broker that is not the controller, killed and restarted alike;
    // the quorum's view (DescribeQuorum, through any node) names it fenced.
    let (_, controller) = cluster.agreed_controller(FORM_WITHIN);
    let other = (controller + 1) % 3;
    cluster.kill(other);
    let alive: Vec<u32> = (1..=3).filter(|id| *id as usize - 1 != other).collect();
    cluster.wait_for_brokers(&alive, FAILOVER_WITHIN);
    let voters = cluster.voters((other + 1) % 3);
    let expected: Vec<(u32, bool)> = (1..=3).map(|id| (id, id as usize - 1 == other)).collect();
    assert_eq!(voters, expected);
    cluster.start(other);
    cluster.wait_for_brokers(&[1, 2, 3], FORM_WITHIN);
}

#[test]
fn a_node_of_another_cluster_is_refused() {
    let mut cluster = Cluster::new("foreign");
    cluster.start(0);
    cluster.start(1);
    let (cluster_id, _) = cluster.agreed_controller(FORM_WITHIN);

    // Node 3's directory was made by a cluster of its own.
    let foreign = cluster.root.join("foreign");
    let mut alone = Command::new(RILL);
    alone
        .args(["serve", "--node-id", "3", "--listen", "127.0.0.1:0"])
        .args(["--admin-listen", "127.0.0.1:0", "--data-dir"])
        .arg(&foreign)
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut child = alone.spawn().unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    let theirs = std::fs::read_to_string(foreign.join("meta.properties")).unwrap();
    assert!(!theirs.contains(&cluster_id));
    // Only the metadata of the quorum of one goes; meta.properties stays.
    std::fs::remove_dir_all(foreign.join("__cluster_metadata")).unwrap();

    let refused = cluster.command(2, &foreign).output().unwrap();
    assert_eq!(refused.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    // Log lines of other threads may come after it.
    let sentence = stderr
        .lines()
        .find(|line| line.starts_with("rill: node 3 refuses to join the controller quorum: "));
    assert!(
        sentence.is_some_and(|s| s.contains(&format!("to cluster {cluster_id}"))),
        "{stderr}"
    );
    // The quorum goes on.
    assert!(cluster.create_topic(cluster.agreed_controller(FORM_WITHIN).1, "after"));
}
