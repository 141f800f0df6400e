//! The operator console protocol: `stationctl` talks to `stationd` over a Unix socket with
//! framed JSON messages (a 4-byte big-endian length, then that many bytes of JSON), each at
//! most [`MAX_FRAME`] bytes. A client sends one [`Request`]; the daemon answers with one
//! [`Reply`], or, for `watch`, a stream of them until the client hangs up.

use std::io::{Read, Write};

pub mod server;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The largest frame either side accepts.
pub const MAX_FRAME: usize = 1 << 20;

/// What an operator asks the daemon.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "kebab-case")]
pub enum Request {
    /// Bays, their devices and live progress.
    Status,
    /// Status, again each time something changes.
    Watch,
    /// A barcode scanned for the device in `bay`.
    Scan {
        /// The bay.
        bay: String,
        /// The scanned text.
        text: String,
    },
    /// The station's jobs.
    Jobs,
    /// One job, with its device runs.
    JobShow {
        /// The job.
        job_id: String,
    },
    /// Erase records, newest first.
    EraseRecords,
    /// A job's package arrived: AtAWS. With a bay, the next device there is that job's.
    Receive {
        /// The job.
        job_id: String,
        /// The bay its device goes into.
        bay: Option<String>,
    },
    /// Fails a job for what only a person can see.
    Fail {
        /// The job.
        job_id: String,
        /// MissingDevice, UnsupportedPowerSupply or UnsupportedDeviceType.
        code: String,
    },
    /// A job's device was shipped back.
    Ship {
        /// The job.
        job_id: String,
        /// The carrier.
        carrier: String,
        /// The tracking number.
        tracking: String,
    },
    /// The operator unlocked the PIN-pad device in `bay`.
    Unlock {
        /// The bay.
        bay: String,
    },
    /// The event stream after sequence number `since`, as JSON lines, in frames of up to
    /// [`EVENT_BATCH`] events; with `follow`, live events as they happen, until the client
    /// hangs up.
    Events {
        /// The last sequence number already seen (0: from the start).
        since: i64,
        /// Keep streaming.
        follow: bool,
    },
}

/// The most events in one frame.
pub const EVENT_BATCH: u32 = 500;

impl Request {
    /// The command's name, for the audit trail.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Status => "status",
            Self::Watch => "watch",
            Self::Scan { .. } => "scan",
            Self::Jobs => "jobs",
            Self::JobShow { .. } => "job-show",
            Self::EraseRecords => "erase-records",
            Self::Receive { .. } => "receive",
            Self::Fail { .. } => "fail",
            Self::Ship { .. } => "ship",
            Self::Unlock { .. } => "unlock",
            Self::Events { .. } => "events",
        }
    }

    /// Whether the command changes something (and so goes into the audit trail).
    pub fn is_action(&self) -> bool {
        matches!(
            self,
            Self::Scan { .. }
                | Self::Receive { .. }
                | Self::Fail { .. }
                | Self::Ship { .. }
                | Self::Unlock { .. }
        )
    }
}

/// The daemon's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reply {
    /// Whether the request succeeded.
    pub ok: bool,
    /// The answer for a person.
    pub text: String,
    /// The answer for a script (`--json`).
    pub data: serde_json::Value,
}

impl Reply {
    /// A successful reply.
    pub fn ok(text: impl Into<String>, data: serde_json::Value) -> Self {
        Self {
            ok: true,
            text: text.into(),
            data,
        }
    }

    /// A refusal, with what to do.
    pub fn error(text: impl Into<String>) -> Self {
        let text = text.into();
        Self {
            ok: false,
            data: serde_json::json!({ "error": text }),
            text,
        }
    }
}

/// A frame that could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The socket failed.
    #[error("console socket: {0}")]
    Io(#[from] std::io::Error),
    /// The peer sent more than [`MAX_FRAME`] bytes.
    #[error("console message of {0} bytes is over the {MAX_FRAME}-byte limit")]
    TooLarge(usize),
    /// The peer sent something that is not the expected JSON.
    #[error("console message is not valid: {0}")]
    Json(#[from] serde_json::Error),
}

fn encode<T: Serialize>(message: &T) -> Result<Vec<u8>, FrameError> {
    let body = serde_json::to_vec(message)?;
    if body.len() > MAX_FRAME {
        return Err(FrameError::TooLarge(body.len()));
    }
    let len = u32::try_from(body.len()).map_err(|_| FrameError::TooLarge(body.len()))?;
    let mut frame = Vec::with_capacity(4 + body.len());
    frame.extend_from_slice(&len.to_be_bytes());
    frame.extend_from_slice(&body);
    Ok(frame)
}

fn frame_len(header: [u8; 4]) -> Result<usize, FrameError> {
    let len = u32::from_be_bytes(header) as usize;
    if len > MAX_FRAME {
        return Err(FrameError::TooLarge(len));
    }
    Ok(len)
}

/// Writes one frame (async side, the daemon).
///
/// # Errors
///
/// The socket fails or the message is too large.
pub async fn write_frame<W: AsyncWriteExt + Unpin, T: Serialize>(
    w: &mut W,
    message: &T,
) -> Result<(), FrameError> {
    w.write_all(&encode(message)?).await?;
    w.flush().await?;
    Ok(())
}

/// Reads one frame (async side, the daemon); `None` when the peer closed the connection.
///
/// # Errors
///
/// The socket fails, the frame is too large or not the expected JSON.
pub async fn read_frame<R: AsyncReadExt + Unpin, T: for<'de> Deserialize<'de>>(
    r: &mut R,
) -> Result<Option<T>, FrameError> {
    let mut header = [0u8; 4];
    match r.read_exact(&mut header).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let mut body = vec![0u8; frame_len(header)?];
    r.read_exact(&mut body).await?;
    Ok(Some(serde_json::from_slice(&body)?))
}

/// Writes one frame (blocking side, `stationctl`).
///
/// # Errors
///
/// The socket fails or the message is too large.
pub fn send<W: Write, T: Serialize>(w: &mut W, message: &T) -> Result<(), FrameError> {
    w.write_all(&encode(message)?)?;
    w.flush()?;
    Ok(())
}

/// Reads one frame (blocking side, `stationctl`); `None` when the daemon closed the
/// connection.
///
/// # Errors
///
/// The socket fails, the frame is too large or not the expected JSON.
pub fn receive<R: Read, T: for<'de> Deserialize<'de>>(r: &mut R) -> Result<Option<T>, FrameError> {
    let mut header = [0u8; 4];
    match r.read_exact(&mut header) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let mut body = vec![0u8; frame_len(header)?];
    r.read_exact(&mut body)?;
    Ok(Some(serde_json::from_slice(&body)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip_through_frames() {
        let request = Request::Ship {
            job_id: "ABCDE".into(),
            carrier: "UPS".into(),
            tracking: "1Z999".into(),
        };
        let mut wire = Vec::new();
        send(&mut wire, &request).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(&wire[..4], &((wire.len() - 4) as u32).to_be_bytes());
        let back: Option<Request> = receive(&mut wire.as_slice()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(back, Some(request));
        let none: Option<Request> = receive(&mut &[][..]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(none, None);
    }

    #[test]
    fn oversized_and_garbled_frames_are_refused() {
        let mut huge = (MAX_FRAME as u32 + 1).to_be_bytes().to_vec();
        huge.extend_from_slice(b"{}");
        let r: Result<Option<Request>, _> = receive(&mut huge.as_slice());
        assert!(matches!(r, Err(FrameError::TooLarge(n)) if n == MAX_FRAME + 1));
        let mut bad = 5u32.to_be_bytes().to_vec();
        bad.extend_from_slice(b"hello");
        let r: Result<Option<Request>, _> = receive(&mut bad.as_slice());
        assert!(matches!(r, Err(FrameError::Json(_))));
    }
}
