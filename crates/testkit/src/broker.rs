//! A real Rill broker in-process, for tests: an ephemeral port, a temporary
//! data directory, gone when dropped. No Docker, no JVM.

use std::net::SocketAddr;

/// Why the test broker could not do what a test asked.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Error(String);

pub type Result<T> = std::result::Result<T, Error>;

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
            .map_err(|error| Error(format!("cannot create a temp dir: {error}")))?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("rill-test-broker")
            .enable_all()
            .build()
            .map_err(|error| Error(format!("cannot start a tokio runtime: {error}")))?;
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
        .map_err(|_| Error("the test broker panicked while starting".into()))?
        .map_err(|error| Error(format!("the test broker did not start: {error}")))?;
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
            return Err(Error("the test broker is stopped".into()));
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
        .map_err(|_| Error("the test broker panicked while restarting".into()))?
        .map_err(|error| Error(format!("the test broker did not restart: {error}")))?;
        self.broker = Some(started);
        Ok(())
    }

    /// `host:port` for a client's bootstrap list.
    pub fn bootstrap(&self) -> String {
        self.addr.to_string()
    }

    /// Creates a topic; it exists when this returns.
    pub fn create_topic(&self, name: &str, partitions: i32) -> Result<()> {
        let (Some(runtime), Some(broker)) = (self.runtime.as_ref(), self.broker.as_ref()) else {
            return Err(Error("the test broker is stopped".into()));
        };
        std::thread::scope(|scope| {
            scope
                .spawn(|| runtime.block_on(broker.create_topic(name, partitions)))
                .join()
        })
        .map_err(|_| Error("creating a topic panicked".into()))?
        .map_err(Error)
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
