//! Kafka's framing: every request and response is an `i32` size, then that
//! many bytes.

/// Why a frame's size prefix was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("frame size {0} is negative")]
    Negative(i32),
    #[error("frame size {len} exceeds the maximum of {max} bytes")]
    TooLarge { len: usize, max: usize },
}

/// Reads a frame's size from its 4-byte prefix and checks it against `max`
/// before anyone allocates a buffer for it.
pub fn frame_len(prefix: [u8; 4], max: usize) -> Result<usize, FrameError> {
    let len = i32::from_be_bytes(prefix);
    let len = usize::try_from(len).map_err(|_| FrameError::Negative(len))?;
    if len > max {
        return Err(FrameError::TooLarge { len, max });
    }
    Ok(len)
}
