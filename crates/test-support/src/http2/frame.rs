//! HTTP/2 frames written byte by byte (RFC 9113 §4.1, §6) and HPACK header blocks made
//! of literal fields (RFC 7541 §6.2.2), for requests a conforming client library
//! refuses to send: uppercase names, misplaced or unknown pseudo-headers, a header
//! block cut at any byte across CONTINUATION frames.

use std::io::{self, Read};

/// What a client sends first on an h2c connection with prior knowledge (RFC 9113 §3.4).
pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Frame types (RFC 9113 §6).
pub mod kind {
    /// DATA.
    pub const DATA: u8 = 0x0;
    /// HEADERS.
    pub const HEADERS: u8 = 0x1;
    /// RST_STREAM.
    pub const RST_STREAM: u8 = 0x3;
    /// SETTINGS.
    pub const SETTINGS: u8 = 0x4;
    /// PING.
    pub const PING: u8 = 0x6;
    /// GOAWAY.
    pub const GOAWAY: u8 = 0x7;
    /// CONTINUATION.
    pub const CONTINUATION: u8 = 0x9;
}

/// Frame flags (RFC 9113 §6).
pub mod flag {
    /// END_STREAM on DATA and HEADERS.
    pub const END_STREAM: u8 = 0x1;
    /// ACK on SETTINGS and PING.
    pub const ACK: u8 = 0x1;
    /// END_HEADERS on HEADERS and CONTINUATION.
    pub const END_HEADERS: u8 = 0x4;
    /// PADDED on DATA and HEADERS.
    pub const PADDED: u8 = 0x8;
    /// PRIORITY on HEADERS.
    pub const PRIORITY: u8 = 0x20;
}

/// Error codes of RST_STREAM and GOAWAY (RFC 9113 §7).
pub mod error_code {
    /// NO_ERROR.
    pub const NO_ERROR: u32 = 0x0;
    /// PROTOCOL_ERROR.
    pub const PROTOCOL_ERROR: u32 = 0x1;
    /// INTERNAL_ERROR.
    pub const INTERNAL_ERROR: u32 = 0x2;
    /// FRAME_SIZE_ERROR.
    pub const FRAME_SIZE_ERROR: u32 = 0x6;
    /// COMPRESSION_ERROR.
    pub const COMPRESSION_ERROR: u32 = 0x9;

    /// The RFC 9113 name of `code` for the codes above, else its number.
    pub fn name(code: u32) -> String {
        match code {
            NO_ERROR => "NO_ERROR".to_owned(),
            PROTOCOL_ERROR => "PROTOCOL_ERROR".to_owned(),
            INTERNAL_ERROR => "INTERNAL_ERROR".to_owned(),
            FRAME_SIZE_ERROR => "FRAME_SIZE_ERROR".to_owned(),
            COMPRESSION_ERROR => "COMPRESSION_ERROR".to_owned(),
            other => format!("error 0x{other:x}"),
        }
    }
}

/// Largest frame payload a peer must accept before it raises SETTINGS_MAX_FRAME_SIZE.
pub const DEFAULT_MAX_FRAME: usize = 16_384;

/// One frame: its 9-byte header's fields and its payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// The frame type ([`kind`]).
    pub kind: u8,
    /// The flags ([`flag`]).
    pub flags: u8,
    /// The stream identifier (31 bits; 0 for the connection).
    pub stream: u32,
    /// The payload, padding included.
    pub payload: Vec<u8>,
}

impl Frame {
    /// SETTINGS with these `(identifier, value)` parameters.
    pub fn settings(parameters: &[(u16, u32)]) -> Frame {
        let mut payload = Vec::with_capacity(parameters.len() * 6);
        for (id, value) in parameters {
            payload.extend_from_slice(&id.to_be_bytes());
            payload.extend_from_slice(&value.to_be_bytes());
        }
        Frame {
            kind: kind::SETTINGS,
            flags: 0,
            stream: 0,
            payload,
        }
    }

    /// The acknowledgement of a SETTINGS or PING frame `of`.
    pub fn ack(of: &Frame) -> Frame {
        Frame {
            kind: of.kind,
            flags: flag::ACK,
            stream: 0,
            // A PING's ACK carries the same 8 bytes; a SETTINGS ACK is empty.
            payload: if of.kind == kind::PING {
                of.payload.clone()
            } else {
                Vec::new()
            },
        }
    }

    /// HEADERS carrying (part of) a header block.
    pub fn headers(stream: u32, block: &[u8], end_headers: bool, end_stream: bool) -> Frame {
        let flags = if end_headers { flag::END_HEADERS } else { 0 }
            | if end_stream { flag::END_STREAM } else { 0 };
        Frame {
            kind: kind::HEADERS,
            flags,
            stream,
            payload: block.to_vec(),
        }
    }

    /// CONTINUATION carrying the next part of a header block.
    pub fn continuation(stream: u32, block: &[u8], end_headers: bool) -> Frame {
        Frame {
            kind: kind::CONTINUATION,
            flags: if end_headers { flag::END_HEADERS } else { 0 },
            stream,
            payload: block.to_vec(),
        }
    }

    /// DATA.
    pub fn data(stream: u32, data: &[u8], end_stream: bool) -> Frame {
        Frame {
            kind: kind::DATA,
            flags: if end_stream { flag::END_STREAM } else { 0 },
            stream,
            payload: data.to_vec(),
        }
    }

    /// Whether `flag` is set.
    pub fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }

    /// The frame on the wire: 24-bit length, type, flags, stream, payload.
    pub fn encode(&self) -> Vec<u8> {
        let length = u32::try_from(self.payload.len())
            .ok()
            .filter(|length| *length < 1 << 24)
            .unwrap_or_else(|| panic!("a {}-byte frame payload", self.payload.len()));
        let mut out = Vec::with_capacity(9 + self.payload.len());
        out.extend_from_slice(&length.to_be_bytes()[1..]);
        out.push(self.kind);
        out.push(self.flags);
        out.extend_from_slice(&(self.stream & 0x7fff_ffff).to_be_bytes());
        out.extend_from_slice(&self.payload);
        out
    }

    /// Reads one frame.
    pub fn read(reader: &mut impl Read) -> io::Result<Frame> {
        let mut head = [0u8; 9];
        reader.read_exact(&mut head)?;
        let length = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
        let mut payload = vec![0; length];
        reader.read_exact(&mut payload)?;
        Ok(Frame {
            kind: head[3],
            flags: head[4],
            stream: u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff,
            payload,
        })
    }

    /// The header block fragment of a HEADERS or CONTINUATION frame, without the
    /// padding and priority fields HEADERS may carry.
    pub fn block_fragment(&self) -> io::Result<&[u8]> {
        let mut body = self.payload.as_slice();
        if self.kind != kind::HEADERS {
            return Ok(body);
        }
        let mut padding = 0;
        if self.has(flag::PADDED) {
            let (&pad, rest) = body.split_first().ok_or_else(|| short(self))?;
            padding = usize::from(pad);
            body = rest;
        }
        if self.has(flag::PRIORITY) {
            body = body.get(5..).ok_or_else(|| short(self))?;
        }
        body.get(..body.len().saturating_sub(padding))
            .filter(|_| padding <= body.len())
            .ok_or_else(|| short(self))
    }

    /// The error code of a RST_STREAM or GOAWAY frame.
    pub fn error_code(&self) -> Option<u32> {
        let at = match self.kind {
            kind::RST_STREAM => 0,
            kind::GOAWAY => 4,
            _ => return None,
        };
        let bytes = self.payload.get(at..at + 4)?;
        Some(u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
    }
}

fn short(frame: &Frame) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("frame of type {} too short for its flags", frame.kind),
    )
}

/// An HPACK header block in which every field is a literal without indexing with a
/// literal name (RFC 7541 §6.2.2), neither Huffman-coded: names and values reach the
/// server exactly as given, in order, repeats and case included.
pub fn header_block(fields: &[(&str, &str)]) -> Vec<u8> {
    let mut block = Vec::new();
    for (name, value) in fields {
        block.push(0x00);
        for text in [name, value] {
            hpack_integer(text.len(), 7, &mut block);
            block.extend_from_slice(text.as_bytes());
        }
    }
    block
}

/// An HPACK integer with an `prefix`-bit prefix (RFC 7541 §5.1), the byte's other bits
/// zero (here: no Huffman coding).
fn hpack_integer(value: usize, prefix: u32, out: &mut Vec<u8>) {
    let max = (1usize << prefix) - 1;
    if value < max {
        out.push(value as u8);
        return;
    }
    out.push(max as u8);
    let mut rest = value - max;
    while rest >= 0x80 {
        out.push((rest & 0x7f) as u8 | 0x80);
        rest >>= 7;
    }
    out.push(rest as u8);
}

/// Where each field after the first begins in [`header_block`]`(fields)`: cuts that
/// put every field in a frame of its own.
pub fn field_offsets(fields: &[(&str, &str)]) -> Vec<usize> {
    (1..fields.len())
        .map(|end| header_block(&fields[..end]).len())
        .collect()
}

/// Cuts that keep every frame of a `length`-byte block within [`DEFAULT_MAX_FRAME`].
pub fn max_frame_cuts(length: usize) -> Vec<usize> {
    (DEFAULT_MAX_FRAME..length)
        .step_by(DEFAULT_MAX_FRAME)
        .collect()
}

/// A request's header block as HEADERS then one CONTINUATION per cut: `cuts` are byte
/// offsets into `block`, increasing, each strictly inside it (they may fall inside a
/// field: a receiver must join the fragments before decoding).
pub fn header_frames(stream: u32, block: &[u8], cuts: &[usize], end_stream: bool) -> Vec<Frame> {
    let mut bounds = Vec::with_capacity(cuts.len() + 2);
    bounds.push(0);
    bounds.extend_from_slice(cuts);
    bounds.push(block.len());
    assert!(
        bounds.windows(2).all(|pair| pair[0] < pair[1]),
        "cuts {cuts:?} must increase strictly inside a {}-byte block",
        block.len()
    );
    let last = bounds.len() - 2;
    bounds
        .windows(2)
        .enumerate()
        .map(|(i, pair)| {
            let fragment = &block[pair[0]..pair[1]];
            if i == 0 {
                Frame::headers(stream, fragment, i == last, end_stream)
            } else {
                Frame::continuation(stream, fragment, i == last)
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_use_the_prefix_then_continuation_bytes() {
        // RFC 7541 C.1.1 and C.1.2 (with a 5-bit prefix there; 7 bits here).
        let mut out = Vec::new();
        hpack_integer(10, 7, &mut out);
        assert_eq!(out, [10]);
        out.clear();
        hpack_integer(1337, 5, &mut out);
        assert_eq!(out, [31, 154, 10]);
        out.clear();
        hpack_integer(127, 7, &mut out);
        assert_eq!(out, [127, 0]);
    }

    #[test]
    fn blocks_decode_to_the_fields_given_and_frames_round_trip() {
        let long = "v".repeat(300);
        let fields = [("X-Upper", "1"), (":path", "/"), ("x-long", long.as_str())];
        let block = header_block(&fields);
        let decoded = loona_hpack::Decoder::new().decode(&block).unwrap();
        let expected: Vec<(Vec<u8>, Vec<u8>)> = fields
            .iter()
            .map(|(n, v)| (n.as_bytes().to_vec(), v.as_bytes().to_vec()))
            .collect();
        assert_eq!(decoded, expected);

        let frames = header_frames(3, &block, &[1, 20], true);
        let kinds: Vec<(u8, u8)> = frames.iter().map(|f| (f.kind, f.flags)).collect();
        assert_eq!(
            kinds,
            [
                (kind::HEADERS, flag::END_STREAM),
                (kind::CONTINUATION, 0),
                (kind::CONTINUATION, flag::END_HEADERS)
            ]
        );
        let mut joined = Vec::new();
        for frame in &frames {
            let wire = frame.encode();
            let read = Frame::read(&mut wire.as_slice()).unwrap();
            assert_eq!(&read, frame);
            joined.extend_from_slice(read.block_fragment().unwrap());
        }
        assert_eq!(joined, block);
    }

    #[test]
    fn offsets_fall_between_fields_and_cuts_bound_frames() {
        let fields = [("a", "1"), ("bb", "22"), ("c", "")];
        let block = header_block(&fields);
        assert_eq!(field_offsets(&fields), [5, 12]);
        assert_eq!(block[5..12], [0, 2, b'b', b'b', 2, b'2', b'2']);
        assert_eq!(max_frame_cuts(DEFAULT_MAX_FRAME), Vec::<usize>::new());
        assert_eq!(
            max_frame_cuts(2 * DEFAULT_MAX_FRAME + 1),
            [DEFAULT_MAX_FRAME, 2 * DEFAULT_MAX_FRAME]
        );
    }
}
