//! A real Rill broker in-process, for tests: an ephemeral port, a temporary
//! data directory, gone when dropped. No Docker, no JVM.
//!
//! ```no_run
//! let broker = rill_client::testing::Broker::start().unwrap();
//! broker.create_topic("events", 3).unwrap();
//! let producer = rill_client::Producer::connect(&broker.bootstrap()).unwrap();
//! ```

use std::net::SocketAddr;

use crate::admin::{AdminClient, NewTopic};
use crate::client::ClientConfig;
use crate::error::{Error, Result};

/// A broker running on its own runtime threads, so it serves both blocking
/// and async tests.
pub struct Broker {
    runtime: Option<tokio::runtime::Runtime>,
    broker: Option<rill_broker::Broker>,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Broker {
    /// Starts a broker on 127.0.0.1 with an ephemeral port.
    pub fn start() -> Result<Broker> {
        let dir = tempfile::tempdir()
            .map_err(|error| Error::Config(format!("cannot create a temp dir: {error}")))?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("rill-test-broker")
            .enable_all()
            .build()
            .map_err(|error| Error::Config(format!("cannot start a tokio runtime: {error}")))?;
        let config = rill_broker::BrokerConfig {
            data_dir: dir.path().to_path_buf(),
            listen: "127.0.0.1:0".into(),
            admin_listen: "127.0.0.1:0".into(),
            ..Default::default()
        };
        let broker = std::thread::scope(|scope| {
            scope
                .spawn(|| runtime.block_on(rill_broker::Broker::start(config)))
                .join()
        })
        .map_err(|_| Error::Config("the test broker panicked while starting".into()))?
        .map_err(|error| Error::Config(format!("the test broker did not start: {error}")))?;
        Ok(Broker {
            addr: broker.kafka_addr(),
            runtime: Some(runtime),
            broker: Some(broker),
            _dir: dir,
        })
    }

    /// Stops the broker cleanly and starts it again on the same port and
    /// data, as an operator's restart would; clients must reconnect.
    pub fn restart(&mut self) -> Result<()> {
        let (Some(runtime), Some(broker)) = (self.runtime.as_ref(), self.broker.take()) else {
            return Err(Error::Config("the test broker is stopped".into()));
        };
        let config = rill_broker::BrokerConfig {
            data_dir: self._dir.path().to_path_buf(),
            listen: self.addr.to_string(),
            admin_listen: "127.0.0.1:0".into(),
            ..Default::default()
        };
        let started = std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    runtime.block_on(async {
                        broker.shutdown().await;
                        rill_broker::Broker::start(config).await
                    })
                })
                .join()
        })
        .map_err(|_| Error::Config("the test broker panicked while restarting".into()))?
        .map_err(|error| Error::Config(format!("the test broker did not restart: {error}")))?;
        self.broker = Some(started);
        Ok(())
    }

    /// `host:port` for a client's bootstrap list.
    pub fn bootstrap(&self) -> String {
        self.addr.to_string()
    }

    /// Creates a topic, waiting until it exists.
    pub fn create_topic(&self, name: &str, partitions: i32) -> Result<()> {
        let bootstrap = self.bootstrap();
        let name = name.to_string();
        let runtime = self
            .runtime
            .as_ref()
            .ok_or_else(|| Error::Config("the test broker is stopped".into()))?;
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    runtime.block_on(async {
                        let admin = AdminClient::connect(ClientConfig::new(&bootstrap)).await?;
                        admin
                            .create_topics(vec![NewTopic::new(&name, partitions)])
                            .await
                    })
                })
                .join()
        })
        .map_err(|_| Error::Config("creating a topic panicked".into()))?
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let (Some(runtime), Some(broker)) = (self.runtime.take(), self.broker.take()) else {
            return;
        };
        // A plain thread may block on the runtime even when the broker is
        // dropped inside async code.
        let _ = std::thread::spawn(move || {
            runtime.block_on(broker.shutdown());
        })
        .join();
    }
}
