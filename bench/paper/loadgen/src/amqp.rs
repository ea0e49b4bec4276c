//! RabbitMQ over AMQP 0-9-1 with lapin, and a fake broker for `--sink`.
//!
//! Producer: no publisher confirms (the paper's producer does not wait for
//! acknowledgements); `--burst B` issues B publishes and then waits until
//! lapin has written all B to the socket, so B = 1 is one message per write
//! and B = 50 is fifty. The run ends when the broker holds every message
//! (a passive queue.declare reports the count), not when the socket took it.
//!
//! Consumer: manual acks with basic.qos prefetch (the paper's "up to 1,000
//! messages per pull"), one cumulative ack per half window.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::{Outcome, Run};

/// How long the consumer waits for a message before it calls the queue
/// drained.
const IDLE_MAX: Duration = Duration::from_secs(10);

/// How long the producer waits for the broker to take in its backlog.
const DRAIN_MAX: Duration = Duration::from_secs(600);

async fn channel(run: &Run) -> Result<(Connection, Channel)> {
    let url = if run.sink {
        format!("amqp://127.0.0.1:{}/%2f", sink::start(run.clone()).await?)
    } else {
        run.target.clone()
    };
    let connection = Connection::connect(&url, ConnectionProperties::default())
        .await
        .with_context(|| format!("connecting to {url}"))?;
    let channel = connection.create_channel().await?;
    Ok((connection, channel))
}

async fn queue_count(channel: &Channel, run: &Run) -> Result<u64> {
    let options = QueueDeclareOptions {
        durable: run.persistent,
        ..QueueDeclareOptions::default()
    };
    let queue = channel
        .queue_declare(run.queue.as_str().into(), options, FieldTable::default())
        .await
        .with_context(|| format!("declaring queue {}", run.queue))?;
    Ok(u64::from(queue.message_count()))
}

pub async fn produce(run: Run) -> Result<Outcome> {
    let (_connection, channel) = channel(&run).await?;
    let before = queue_count(&channel, &run).await?;
    let properties =
        BasicProperties::default().with_delivery_mode(if run.persistent { 2 } else { 1 });
    let payload = vec![b'x'; run.size];
    let start = Instant::now();
    let deadline = run.deadline(start);
    let mut sent = 0;
    let mut capped = false;
    while sent < run.messages {
        let burst = run.burst.min(run.messages - sent);
        let publishes = (0..burst).map(|_| {
            channel.basic_publish(
                "".into(),
                run.queue.as_str().into(),
                BasicPublishOptions::default(),
                &payload,
                properties.clone(),
            )
        });
        for published in futures_util::future::join_all(publishes).await {
            published.context("basic.publish")?;
        }
        sent += burst;
        if sent % 4096 < burst && Instant::now() >= deadline {
            capped = true;
            break;
        }
    }
    // Done when the queue holds them all.
    let drain_deadline = Instant::now() + DRAIN_MAX;
    loop {
        let held = queue_count(&channel, &run).await?.saturating_sub(before);
        if held >= sent {
            break;
        }
        if Instant::now() > drain_deadline {
            bail!("the broker holds {held} of {sent} messages after {DRAIN_MAX:?}");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(Outcome {
        messages: sent,
        bytes: sent * run.size as u64,
        elapsed: start.elapsed(),
        capped,
    })
}

pub async fn consume(run: Run) -> Result<Outcome> {
    let (_connection, channel) = channel(&run).await?;
    queue_count(&channel, &run).await?;
    let prefetch = u16::try_from(run.prefetch).context("--prefetch must fit in 16 bits")?;
    channel
        .basic_qos(prefetch, BasicQosOptions::default())
        .await?;
    let start = Instant::now();
    let deadline = run.deadline(start);
    let mut consumer = channel
        .basic_consume(
            run.queue.as_str().into(),
            "paperload".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let ack_every = (run.prefetch / 2).max(1);
    let mut received = 0u64;
    let mut bytes = 0u64;
    let mut last = start;
    let mut capped = false;
    while received < run.messages {
        let delivery = match tokio::time::timeout(IDLE_MAX, consumer.next()).await {
            Ok(Some(delivery)) => delivery.context("basic.deliver")?,
            Ok(None) => bail!("the consumer was cancelled after {received} messages"),
            Err(_) => break,
        };
        received += 1;
        bytes += delivery.data.len() as u64;
        last = Instant::now();
        if received.is_multiple_of(ack_every) || received == run.messages {
            channel
                .basic_ack(delivery.delivery_tag, BasicAckOptions { multiple: true })
                .await?;
            if last >= deadline {
                capped = true;
                break;
            }
        }
    }
    if received == 0 {
        bail!("no message arrived within {IDLE_MAX:?}");
    }
    Ok(Outcome {
        messages: received,
        bytes,
        elapsed: last - start,
        capped: capped || received < run.messages,
    })
}

/// A fake AMQP broker: the handshake, then it discards what it is sent
/// (counting publishes, for queue.declare) and, after basic.consume, sends
/// `run.messages` pre-built deliveries.
mod sink {
    use super::*;

    const FRAME_END: u8 = 0xCE;

    pub async fn start(run: Run) -> Result<u16> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        tokio::spawn(async move {
            if let Ok((socket, _)) = listener.accept().await
                && let Err(error) = serve(socket, run).await
            {
                eprintln!("amqp sink: {error:#}");
            }
        });
        Ok(port)
    }

    fn method(out: &mut Vec<u8>, channel: u16, class: u16, method: u16, args: &[u8]) {
        out.push(1);
        out.extend_from_slice(&channel.to_be_bytes());
        out.extend_from_slice(&(4 + args.len() as u32).to_be_bytes());
        out.extend_from_slice(&class.to_be_bytes());
        out.extend_from_slice(&method.to_be_bytes());
        out.extend_from_slice(args);
        out.push(FRAME_END);
    }

    fn short_string(out: &mut Vec<u8>, text: &str) {
        out.push(text.len() as u8);
        out.extend_from_slice(text.as_bytes());
    }

    fn long_string(out: &mut Vec<u8>, text: &str) {
        out.extend_from_slice(&(text.len() as u32).to_be_bytes());
        out.extend_from_slice(text.as_bytes());
    }

    /// A short string at `at` in `args`, and the offset after it.
    fn read_short_string(args: &[u8], at: usize) -> Result<(String, usize)> {
        let len = *args.get(at).context("short string past the end")? as usize;
        let text = args
            .get(at + 1..at + 1 + len)
            .context("short string past the end")?;
        Ok((String::from_utf8_lossy(text).into_owned(), at + 1 + len))
    }

    fn deliver(
        out: &mut Vec<u8>,
        channel: u16,
        tag: &str,
        delivery_tag: u64,
        queue: &str,
        body: &[u8],
    ) {
        let mut args = Vec::with_capacity(64);
        short_string(&mut args, tag);
        args.extend_from_slice(&delivery_tag.to_be_bytes());
        args.push(0); // redelivered
        short_string(&mut args, "");
        short_string(&mut args, queue);
        method(out, channel, 60, 60, &args);
        // Content header: class, weight, body size, no properties.
        out.push(2);
        out.extend_from_slice(&channel.to_be_bytes());
        out.extend_from_slice(&14u32.to_be_bytes());
        out.extend_from_slice(&60u16.to_be_bytes());
        out.extend_from_slice(&0u16.to_be_bytes());
        out.extend_from_slice(&(body.len() as u64).to_be_bytes());
        out.extend_from_slice(&0u16.to_be_bytes());
        out.push(FRAME_END);
        out.push(3);
        out.extend_from_slice(&channel.to_be_bytes());
        out.extend_from_slice(&(body.len() as u32).to_be_bytes());
        out.extend_from_slice(body);
        out.push(FRAME_END);
    }

    async fn serve(socket: TcpStream, run: Run) -> Result<()> {
        socket.set_nodelay(true)?;
        let (mut reader, mut writer) = socket.into_split();
        let mut header = [0u8; 8];
        reader.read_exact(&mut header).await?;
        let mut out = Vec::new();
        let mut args = vec![0, 9, 0, 0, 0, 0]; // version 0-9, empty server-properties
        long_string(&mut args, "PLAIN");
        long_string(&mut args, "en_US");
        method(&mut out, 0, 10, 10, &args);
        writer.write_all(&out).await?;
        let mut reader = tokio::io::BufReader::with_capacity(1 << 20, reader);
        let mut published = 0u64;
        let mut writer = Some(writer);
        let mut payload = Vec::new();
        loop {
            let mut head = [0u8; 7];
            if reader.read_exact(&mut head).await.is_err() {
                return Ok(()); // the client went away
            }
            let kind = head[0];
            let channel = u16::from_be_bytes([head[1], head[2]]);
            let size = u32::from_be_bytes([head[3], head[4], head[5], head[6]]) as usize;
            payload.resize(size + 1, 0);
            reader.read_exact(&mut payload).await?;
            if payload[size] != FRAME_END {
                bail!("frame without its end marker");
            }
            if kind != 1 || size < 4 {
                continue; // content header, body or heartbeat
            }
            let class = u16::from_be_bytes([payload[0], payload[1]]);
            let id = u16::from_be_bytes([payload[2], payload[3]]);
            let args = &payload[4..size];
            let mut reply = Vec::new();
            match (class, id) {
                (10, 11) => method(&mut reply, 0, 10, 30, &[0x07, 0xFF, 0, 2, 0, 0, 0, 0]), // tune: 2047 channels, 128 KiB frames, no heartbeat
                (10, 40) => method(&mut reply, 0, 10, 41, &[0]),
                (20, 10) => method(&mut reply, channel, 20, 11, &[0, 0, 0, 0]),
                (50, 10) => {
                    let (queue, _) = read_short_string(args, 2)?;
                    let mut ok = Vec::new();
                    short_string(&mut ok, &queue);
                    ok.extend_from_slice(&(published as u32).to_be_bytes());
                    ok.extend_from_slice(&0u32.to_be_bytes());
                    method(&mut reply, channel, 50, 11, &ok);
                }
                (60, 10) => method(&mut reply, channel, 60, 11, &[]),
                (60, 40) => published += 1,
                (60, 20) => {
                    let (queue, at) = read_short_string(args, 2)?;
                    let (tag, _) = read_short_string(args, at)?;
                    let mut ok = Vec::new();
                    short_string(&mut ok, &tag);
                    method(&mut reply, channel, 60, 21, &ok);
                    let mut writer = writer.take().context("a second basic.consume")?;
                    writer.write_all(&reply).await?;
                    let (count, body) = (run.messages, vec![b'x'; run.size]);
                    tokio::spawn(async move {
                        let mut out = Vec::with_capacity(1 << 20);
                        let mut tag_next = 1;
                        while tag_next <= count {
                            out.clear();
                            let end = count.min(tag_next + 1000);
                            for delivery_tag in tag_next..=end {
                                deliver(&mut out, channel, &tag, delivery_tag, &queue, &body);
                            }
                            tag_next = end + 1;
                            if writer.write_all(&out).await.is_err() {
                                return;
                            }
                        }
                        std::future::pending::<()>().await; // keep the socket open
                    });
                    continue;
                }
                _ => {} // basic.ack, close: nothing to say
            }
            if !reply.is_empty() {
                let writer = writer.as_mut().context("a request after basic.consume")?;
                writer.write_all(&reply).await?;
            }
        }
    }
}
