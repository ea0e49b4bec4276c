//! Writing a response whose record bytes live in log files: the buffer parts
//! with ordinary writes, each file region with `sendfile(2)`, so record bytes
//! go from the page cache to the socket without passing through user space.

use std::io;
use std::os::fd::AsFd;

use rill_protocol::codec::EncodedFrame;
use tokio::io::{AsyncWriteExt, Interest};
use tokio::net::tcp::OwnedWriteHalf;

pub async fn write_regions(
    write_half: &mut OwnedWriteHalf,
    frame: &EncodedFrame,
) -> io::Result<()> {
    let mut written_until = 0usize;
    for (at, region) in &frame.regions {
        write_half.write_all(&frame.buf[written_until..*at]).await?;
        written_until = *at;
        let mut position = region.position;
        let end = region.position + u64::from(region.len);
        let stream = write_half.as_ref();
        while position < end {
            stream.writable().await?;
            let remaining = (end - position) as usize;
            let sent = stream.try_io(Interest::WRITABLE, || {
                let mut offset = position;
                rustix::fs::sendfile(
                    stream.as_fd(),
                    region.file.as_fd(),
                    Some(&mut offset),
                    remaining,
                )
                .map_err(io::Error::from)
            });
            match sent {
                Ok(0) => {
                    // The file is shorter than the region the log handed out
                    // (truncated underneath us). The frame size is already on
                    // the wire, so the only honest move is to close.
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "log file ended inside a region being sent",
                    ));
                }
                Ok(sent) => position += sent as u64,
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => continue,
                Err(error) => return Err(error),
            }
        }
    }
    write_half.write_all(&frame.buf[written_until..]).await
}
