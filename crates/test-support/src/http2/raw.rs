//! An h2c connection driven frame by frame: the test writes the frames ([`super::frame`]),
//! this reads what Envoy answers on one stream — a response, a stream reset, or the
//! end of the connection.

use std::io::{self, BufReader, Write};
use std::net::{SocketAddr, TcpStream};

use super::frame::{self, error_code, flag, kind, Frame, PREFACE};
use crate::{connect, Response};

/// SETTINGS_INITIAL_WINDOW_SIZE (RFC 9113 §6.5.2).
const INITIAL_WINDOW_SIZE: u16 = 0x4;

/// The per-stream window the client grants: no response a test reads needs a
/// WINDOW_UPDATE (the connection's window stays at the default 64 KiB).
const CLIENT_WINDOW: u32 = (1 << 31) - 1;

/// How Envoy ended one stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// A complete response (interim 1xx skipped; any trailers dropped).
    Response(Response),
    /// RST_STREAM on the stream, with its error code ([`error_code`]).
    Reset(u32),
    /// GOAWAY before the stream ended: its error code and debug data.
    GoAway(u32, String),
    /// The connection closed before the stream ended.
    Closed,
}

impl Outcome {
    /// The response, or a panic naming `what` and what happened instead.
    pub fn response(self, what: &str) -> Response {
        match self {
            Outcome::Response(response) => response,
            other => panic!("{what}: expected a response, got {other:?}"),
        }
    }

    /// The outcome as one line for assertions: `200`, `RST_STREAM PROTOCOL_ERROR`,
    /// `GOAWAY PROTOCOL_ERROR`, `closed`.
    pub fn summary(&self) -> String {
        match self {
            Outcome::Response(r) => r.status.to_string(),
            Outcome::Reset(code) => format!("RST_STREAM {}", error_code::name(*code)),
            Outcome::GoAway(code, _) => format!("GOAWAY {}", error_code::name(*code)),
            Outcome::Closed => "closed".to_owned(),
        }
    }
}

/// One h2c connection with prior knowledge: the preface and the client's SETTINGS are
/// sent on open; the server's SETTINGS and PINGs are acknowledged while reading.
pub struct RawConnection {
    connection: BufReader<TcpStream>,
    decoder: loona_hpack::Decoder<'static>,
}

impl RawConnection {
    /// Connects, sends the connection preface and SETTINGS, and acknowledges the
    /// server's SETTINGS.
    pub fn open(addr: SocketAddr) -> io::Result<RawConnection> {
        let mut connection = connect(addr)?;
        let mut hello = PREFACE.to_vec();
        hello.extend(Frame::settings(&[(INITIAL_WINDOW_SIZE, CLIENT_WINDOW)]).encode());
        connection.get_mut().write_all(&hello)?;
        let mut opened = RawConnection {
            connection,
            decoder: loona_hpack::Decoder::new(),
        };
        opened.await_settings()?;
        Ok(opened)
    }

    /// Reads up to the server's first SETTINGS and acknowledges it: the connection is
    /// established before a test's frames go out, so what Envoy does with them is not
    /// mixed up with how it starts a connection.
    fn await_settings(&mut self) -> io::Result<()> {
        loop {
            let frame = Frame::read(&mut self.connection)?;
            if frame.kind == kind::SETTINGS && !frame.has(flag::ACK) {
                return self.send(&[Frame::ack(&frame)]);
            }
        }
    }

    /// Writes `frames` in one write, as given.
    pub fn send(&mut self, frames: &[Frame]) -> io::Result<()> {
        let bytes: Vec<u8> = frames.iter().flat_map(Frame::encode).collect();
        self.connection.get_mut().write_all(&bytes)
    }

    /// Reads until `stream` ends: a response ending the stream, RST_STREAM on it,
    /// GOAWAY, or the end of the connection.
    pub fn outcome(&mut self, stream: u32) -> io::Result<Outcome> {
        let mut response: Option<Response> = None;
        let mut body = Vec::new();
        // The header block being received (HEADERS then CONTINUATIONs) and its stream.
        let mut block: Option<(u32, Vec<u8>)> = None;
        let mut ended = false;
        loop {
            let frame = match Frame::read(&mut self.connection) {
                Ok(frame) => frame,
                Err(err) if is_closed(&err) => return Ok(Outcome::Closed),
                Err(err) => return Err(err),
            };
            ended |= frame.stream == stream
                && matches!(frame.kind, kind::HEADERS | kind::DATA)
                && frame.has(flag::END_STREAM);
            match frame.kind {
                kind::SETTINGS | kind::PING if !frame.has(flag::ACK) => {
                    self.send(&[Frame::ack(&frame)])?;
                }
                kind::GOAWAY => {
                    let debug = String::from_utf8_lossy(frame.payload.get(8..).unwrap_or(&[]));
                    let code = frame.error_code().unwrap_or(error_code::NO_ERROR);
                    return Ok(Outcome::GoAway(code, debug.into_owned()));
                }
                kind::RST_STREAM if frame.stream == stream => {
                    let code = frame.error_code().unwrap_or(error_code::NO_ERROR);
                    return Ok(Outcome::Reset(code));
                }
                kind::HEADERS | kind::CONTINUATION => {
                    let (_, fragments) = block.get_or_insert_with(|| (frame.stream, Vec::new()));
                    fragments.extend_from_slice(frame.block_fragment()?);
                    if frame.has(flag::END_HEADERS) {
                        let (on, fragments) = block.take().unwrap_or_default();
                        // Every block goes through the decoder, whatever its stream: HPACK's
                        // dynamic table is the connection's.
                        let fields = self.decode(&fragments)?;
                        if on == stream {
                            accept_block(&mut response, fields)?;
                        }
                    }
                }
                kind::DATA if frame.stream == stream => body.extend_from_slice(&frame.payload),
                _ => {}
            }
            // END_STREAM on HEADERS counts once its block is complete.
            if ended && block.is_none() {
                if let Some(mut response) = response.take() {
                    response.body = String::from_utf8_lossy(&body).into_owned();
                    return Ok(Outcome::Response(response));
                }
            }
        }
    }

    fn decode(&mut self, block: &[u8]) -> io::Result<Vec<(String, String)>> {
        let fields = self
            .decoder
            .decode(block)
            .map_err(|err| io::Error::new(io::ErrorKind::InvalidData, format!("HPACK: {err:?}")))?;
        Ok(fields
            .into_iter()
            .map(|(name, value)| {
                (
                    String::from_utf8_lossy(&name).into_owned(),
                    String::from_utf8_lossy(&value).into_owned(),
                )
            })
            .collect())
    }
}

/// Takes a decoded block of the stream: the response's headers are the first block
/// with a non-1xx `:status`; interim responses before it and trailers after it are
/// dropped.
fn accept_block(response: &mut Option<Response>, fields: Vec<(String, String)>) -> io::Result<()> {
    if response.is_some() {
        return Ok(());
    }
    let status = fields
        .iter()
        .find(|(name, _)| name == ":status")
        .and_then(|(_, value)| value.parse::<u16>().ok())
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("response headers without a valid :status: {fields:?}"),
            )
        })?;
    if (100..200).contains(&status) {
        return Ok(());
    }
    *response = Some(Response {
        status,
        headers: fields
            .into_iter()
            .filter(|(name, _)| !name.starts_with(':'))
            .collect(),
        body: String::new(),
    });
    Ok(())
}

fn is_closed(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::UnexpectedEof
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
    )
}

/// Opens a connection, sends `frames` (one request on `stream`, usually 1) and returns
/// how Envoy ended that stream.
pub fn exchange(addr: SocketAddr, frames: &[Frame], stream: u32) -> Outcome {
    let attempt = || -> io::Result<Outcome> {
        let mut connection = RawConnection::open(addr)?;
        connection.send(frames)?;
        connection.outcome(stream)
    };
    attempt().unwrap_or_else(|err| panic!("raw HTTP/2 exchange with {addr} failed: {err}"))
}

/// The pseudo-headers of a `GET /` on `addr` followed by `fields`, as written.
pub fn get_fields<'a>(addr: &'a str, fields: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut all = vec![
        (":method", "GET"),
        (":scheme", "http"),
        (":authority", addr),
        (":path", "/"),
    ];
    all.extend_from_slice(fields);
    all
}

/// A `GET /` on stream 1 with `fields` after the pseudo-headers, its header block in
/// as few frames as the default frame size allows.
pub fn get(addr: SocketAddr, fields: &[(&str, &str)]) -> Outcome {
    let authority = addr.to_string();
    let block = frame::header_block(&get_fields(&authority, fields));
    get_block(addr, &block, &frame::max_frame_cuts(block.len()))
}

/// A `GET /` on stream 1 whose header block `block` (pseudo-headers included, see
/// [`get_fields`]) is cut at `cuts` into HEADERS and CONTINUATION frames.
pub fn get_block(addr: SocketAddr, block: &[u8], cuts: &[usize]) -> Outcome {
    exchange(addr, &frame::header_frames(1, block, cuts, true), 1)
}
