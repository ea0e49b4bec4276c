//! ActiveMQ over STOMP 1.2, written by hand (frames are text: a command
//! line, header lines, a blank line, the body, a NUL), and a fake broker for
//! `--sink`.
//!
//! Producer: SEND frames without receipts (the paper's producer does not
//! wait for acknowledgements); `--burst B` writes B frames per write(2).
//! The last frame asks for a receipt, and the run ends when it comes: the
//! broker handles a connection's frames in order, so by then it has taken
//! every message.
//!
//! Consumer: `ack:client` (cumulative) with `activemq.prefetchSize`, one
//! ACK per 100 messages: the paper's "up to 1,000 messages per pull".

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedReadHalf;
use tokio::net::{TcpListener, TcpStream};

use crate::{Outcome, Run};

/// How long the consumer waits for a message before it calls the queue
/// drained.
const IDLE_MAX: Duration = Duration::from_secs(10);

/// Messages between two cumulative ACKs at most.
const ACK_EVERY_MAX: u64 = 100;

/// A frame larger than this is a protocol error here (our bodies are small).
const FRAME_BYTES_MAX: usize = 1 << 20;

/// One parsed frame: the command, the headers, the body.
pub struct Frame {
    pub command: String,
    pub headers: Vec<(String, String)>,
    pub body_len: usize,
}

impl Frame {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }
}

/// Reads frames from a socket through one growing buffer.
pub struct FrameReader {
    socket: OwnedReadHalf,
    buffer: Vec<u8>,
    start: usize,
}

impl FrameReader {
    pub fn new(socket: OwnedReadHalf) -> FrameReader {
        FrameReader {
            socket,
            buffer: Vec::with_capacity(1 << 20),
            start: 0,
        }
    }

    /// The next frame, or None at the end of the stream.
    pub async fn next(&mut self) -> Result<Option<Frame>> {
        loop {
            if let Some(frame) = self.parse()? {
                return Ok(Some(frame));
            }
            if self.start > 0 {
                self.buffer.drain(..self.start);
                self.start = 0;
            }
            if self.buffer.len() > FRAME_BYTES_MAX {
                bail!("a STOMP frame larger than {FRAME_BYTES_MAX} bytes");
            }
            let len = self.buffer.len();
            self.buffer.resize(len + (256 << 10), 0);
            let read = self.socket.read(&mut self.buffer[len..]).await?;
            self.buffer.truncate(len + read);
            if read == 0 {
                return Ok(None);
            }
        }
    }

    fn parse(&mut self) -> Result<Option<Frame>> {
        // Heart-beats and the optional EOLs after a frame's NUL.
        while self.start < self.buffer.len() && matches!(self.buffer[self.start], b'\n' | b'\r') {
            self.start += 1;
        }
        let data = &self.buffer[self.start..];
        let Some(head_len) = data.windows(2).position(|pair| pair == b"\n\n") else {
            return Ok(None);
        };
        let head = std::str::from_utf8(&data[..head_len]).context("frame head is not UTF-8")?;
        let mut lines = head.lines();
        let command = lines
            .next()
            .unwrap_or_default()
            .trim_end_matches('\r')
            .to_string();
        let headers: Vec<(String, String)> = lines
            .filter_map(|line| line.split_once(':'))
            .map(|(key, value)| (key.to_string(), value.trim_end_matches('\r').to_string()))
            .collect();
        let body_start = head_len + 2;
        let length = headers
            .iter()
            .find(|(key, _)| key == "content-length")
            .map(|(_, value)| value.parse::<usize>())
            .transpose()
            .context("content-length is not a number")?;
        let body_len = match length {
            Some(length) if data.len() > body_start + length => length,
            Some(_) => return Ok(None),
            None => match data[body_start..].iter().position(|&byte| byte == 0) {
                Some(length) => length,
                None => return Ok(None),
            },
        };
        if data[body_start + body_len] != 0 {
            bail!("frame body not followed by NUL");
        }
        self.start += body_start + body_len + 1;
        Ok(Some(Frame {
            command,
            headers,
            body_len,
        }))
    }
}

async fn connect(run: &Run) -> Result<(FrameReader, tokio::net::tcp::OwnedWriteHalf)> {
    let address = if run.sink {
        format!("127.0.0.1:{}", sink::start(run.clone()).await?)
    } else {
        run.target.clone()
    };
    let socket = TcpStream::connect(&address)
        .await
        .with_context(|| format!("connecting to {address}"))?;
    socket.set_nodelay(true)?;
    let (reader, mut writer) = socket.into_split();
    let mut reader = FrameReader::new(reader);
    writer
        .write_all(
            b"CONNECT\naccept-version:1.2\nhost:localhost\nlogin:admin\npasscode:admin\n\n\0",
        )
        .await?;
    match reader.next().await? {
        Some(frame) if frame.command == "CONNECTED" => Ok((reader, writer)),
        Some(frame) => bail!(
            "CONNECT answered with {} {:?}",
            frame.command,
            frame.headers
        ),
        None => bail!("the broker closed the connection after CONNECT"),
    }
}

fn send_frame(out: &mut Vec<u8>, run: &Run, body: &[u8], receipt: bool) {
    out.extend_from_slice(b"SEND\ndestination:/queue/");
    out.extend_from_slice(run.queue.as_bytes());
    out.extend_from_slice(if run.persistent {
        b"\npersistent:true"
    } else {
        b"\npersistent:false"
    });
    if receipt {
        out.extend_from_slice(b"\nreceipt:last");
    }
    out.extend_from_slice(format!("\ncontent-length:{}\n\n", body.len()).as_bytes());
    out.extend_from_slice(body);
    out.push(0);
}

pub async fn produce(run: Run) -> Result<Outcome> {
    let (mut reader, mut writer) = connect(&run).await?;
    let body = vec![b'x'; run.size];
    let start = Instant::now();
    let deadline = run.deadline(start);
    let mut out = Vec::with_capacity(run.burst as usize * (run.size + 64));
    let mut sent = 0;
    let mut capped = false;
    while sent < run.messages {
        let burst = run.burst.min(run.messages - sent);
        out.clear();
        for index in 0..burst {
            let last = sent + index + 1 == run.messages;
            send_frame(&mut out, &run, &body, last);
        }
        sent += burst;
        if sent < run.messages && sent % 4096 < burst && Instant::now() >= deadline {
            capped = true;
            send_frame(&mut out, &run, &body, true);
            sent += 1;
        }
        writer.write_all(&out).await?;
        if capped {
            break;
        }
    }
    loop {
        match reader.next().await? {
            Some(frame) if frame.command == "RECEIPT" => break,
            Some(frame) if frame.command == "ERROR" => {
                bail!("the broker answered ERROR {:?}", frame.headers)
            }
            Some(_) => {}
            None => bail!("the broker closed the connection before the last receipt"),
        }
    }
    Ok(Outcome {
        messages: sent,
        bytes: sent * run.size as u64,
        elapsed: start.elapsed(),
        capped,
    })
}

pub async fn consume(run: Run) -> Result<Outcome> {
    let (mut reader, mut writer) = connect(&run).await?;
    let subscribe = format!(
        "SUBSCRIBE\nid:0\ndestination:/queue/{}\nack:client\nactivemq.prefetchSize:{}\n\n\0",
        run.queue, run.prefetch
    );
    let start = Instant::now();
    let deadline = run.deadline(start);
    writer.write_all(subscribe.as_bytes()).await?;
    // ActiveMQ 5.17 stopped dispatching after 400 unacknowledged messages
    // (two pages of its cursor) with a prefetch of 1,000, so acknowledge
    // every 100: the window the broker may fill stays the prefetch.
    let ack_every = (run.prefetch / 2).clamp(1, ACK_EVERY_MAX);
    let mut received = 0u64;
    let mut bytes = 0u64;
    let mut last = start;
    let mut capped = false;
    while received < run.messages {
        let frame = match tokio::time::timeout(IDLE_MAX, reader.next()).await {
            Ok(frame) => frame?,
            Err(_) => break,
        };
        let Some(frame) = frame else {
            bail!("the broker closed the connection after {received} messages");
        };
        match frame.command.as_str() {
            "MESSAGE" => {}
            "ERROR" => bail!("the broker answered ERROR {:?}", frame.headers),
            _ => continue,
        }
        received += 1;
        bytes += frame.body_len as u64;
        last = Instant::now();
        if received.is_multiple_of(ack_every) || received == run.messages {
            let id = frame
                .header("ack")
                .context("MESSAGE without an ack header")?;
            writer
                .write_all(format!("ACK\nid:{id}\n\n\0").as_bytes())
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

/// A fake STOMP broker: CONNECTED, a RECEIPT for every frame that asks, and
/// after SUBSCRIBE `run.messages` pre-built MESSAGE frames.
mod sink {
    use super::*;

    pub async fn start(run: Run) -> Result<u16> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        tokio::spawn(async move {
            if let Ok((socket, _)) = listener.accept().await
                && let Err(error) = serve(socket, run).await
            {
                eprintln!("stomp sink: {error:#}");
            }
        });
        Ok(port)
    }

    async fn serve(socket: TcpStream, run: Run) -> Result<()> {
        socket.set_nodelay(true)?;
        let (reader, writer) = socket.into_split();
        let mut reader = FrameReader::new(reader);
        let mut writer = Some(writer);
        while let Some(frame) = reader.next().await? {
            let reply = match frame.command.as_str() {
                "CONNECT" | "STOMP" => "CONNECTED\nversion:1.2\n\n\0".to_string(),
                "SUBSCRIBE" => {
                    let mut writer = writer.take().context("a second SUBSCRIBE")?;
                    let (count, body) = (run.messages, vec![b'x'; run.size]);
                    tokio::spawn(async move {
                        let mut out = Vec::with_capacity(1 << 20);
                        let mut next = 0;
                        while next < count {
                            out.clear();
                            let end = count.min(next + 1000);
                            for id in next..end {
                                out.extend_from_slice(
                                    format!(
                                        "MESSAGE\nsubscription:0\nmessage-id:ID:{id}\ndestination:/queue/paper\nack:{id}\ncontent-length:{}\n\n",
                                        body.len()
                                    )
                                    .as_bytes(),
                                );
                                out.extend_from_slice(&body);
                                out.push(0);
                            }
                            next = end;
                            if writer.write_all(&out).await.is_err() {
                                return;
                            }
                        }
                        std::future::pending::<()>().await; // keep the socket open
                    });
                    continue;
                }
                _ => match frame.header("receipt") {
                    Some(id) => format!("RECEIPT\nreceipt-id:{id}\n\n\0"),
                    None => continue,
                },
            };
            let writer = writer.as_mut().context("a request after SUBSCRIBE")?;
            writer.write_all(reply.as_bytes()).await?;
        }
        Ok(())
    }
}
