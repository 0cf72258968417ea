//! HTTP/2 front for the RouteControl Unix socket: rewrites a client's
//! `:authority` that is not a valid URI authority to `localhost` before the
//! gRPC server sees it.
//!
//! gRPC C-core clients (Python `grpcio`, C++, Ruby, PHP), grpc-java and
//! `grpcurl -unix` send the socket path (some percent-encoded) as
//! `:authority`; the HTTP/2 server underneath tonic refuses such a request
//! with `RST_STREAM PROTOCOL_ERROR`. On a Unix socket the authority carries
//! no meaning, so the front replaces an invalid one and leaves every other
//! byte of the connection as it was.
//!
//! [`AuthorityRewriter`] is the sans-IO part: it is fed the client's bytes
//! and returns the bytes for the server. Frames other than HEADERS and
//! CONTINUATION pass through untouched. Every client header block is
//! decoded (HPACK state is per connection, so all of them must be) and
//! encoded again as literals without indexing: the server's HPACK table
//! stays empty and no state has to be kept in step with it. [`serve`]
//! runs it between a client's Unix stream and the server's in-memory end.

use loona_hpack::Decoder;
use std::borrow::Cow;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The client connection preface (RFC 9113 section 3.4).
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const FRAME_HEADER_LEN: usize = 9;
const TYPE_HEADERS: u8 = 0x1;
const TYPE_CONTINUATION: u8 = 0x9;
const FLAG_END_STREAM: u8 = 0x1;
const FLAG_END_HEADERS: u8 = 0x4;
const FLAG_PADDED: u8 = 0x8;
const FLAG_PRIORITY: u8 = 0x20;
/// The frame size every HTTP/2 peer must accept (SETTINGS_MAX_FRAME_SIZE's
/// initial value, which the gRPC server keeps): frames written here never
/// exceed it, and a client frame declaring more is refused from its header,
/// before any of it is buffered.
const MAX_FRAME_PAYLOAD: usize = 16_384;
/// Largest header block (HEADERS plus CONTINUATIONs) accepted from a client.
const MAX_HEADER_BLOCK: usize = 256 * 1024;
/// Largest dynamic table a client may ask the decoder to keep.
const MAX_DYNAMIC_TABLE: usize = 64 * 1024;
/// What an invalid authority becomes.
const REPLACEMENT: &[u8] = b"localhost";

/// Why a client connection was closed by the front.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrontError {
    #[error("client did not start with the HTTP/2 connection preface")]
    NoPreface,
    #[error("stream {0}: frame of type {1:#x} inside a header block (CONTINUATION expected)")]
    InterruptedHeaderBlock(u32, u8),
    #[error("stream {0}: CONTINUATION without a header block")]
    StrayContinuation(u32),
    #[error("stream {0}: malformed HEADERS frame (padding or priority longer than the frame)")]
    MalformedHeaders(u32),
    #[error("stream {0}: frame of {1} bytes, larger than SETTINGS_MAX_FRAME_SIZE ({MAX_FRAME_PAYLOAD})")]
    FrameTooLarge(u32, usize),
    #[error("stream {0}: header block larger than {MAX_HEADER_BLOCK} bytes")]
    HeaderBlockTooLarge(u32),
    #[error("stream {0}: HPACK: {1}")]
    Hpack(u32, String),
}

/// A header block being collected from HEADERS and CONTINUATION frames.
struct PendingBlock {
    stream: u32,
    end_stream: bool,
    priority: Option<[u8; 5]>,
    fragment: Vec<u8>,
}

/// Client-to-server half of the front, without IO.
pub struct AuthorityRewriter {
    input: Vec<u8>,
    preface_seen: bool,
    decoder: Decoder<'static>,
    pending: Option<PendingBlock>,
    rewritten: u64,
}

impl Default for AuthorityRewriter {
    fn default() -> Self {
        Self::new()
    }
}

impl AuthorityRewriter {
    pub fn new() -> Self {
        let mut decoder = Decoder::new();
        decoder.set_max_allowed_table_size(MAX_DYNAMIC_TABLE);
        AuthorityRewriter {
            input: Vec::new(),
            preface_seen: false,
            decoder,
            pending: None,
            rewritten: 0,
        }
    }

    /// How many requests had their authority replaced.
    pub fn rewritten(&self) -> u64 {
        self.rewritten
    }

    /// Takes bytes read from the client and appends to `out` what the
    /// server must receive; a partial frame waits for the next call.
    pub fn feed(&mut self, bytes: &[u8], out: &mut Vec<u8>) -> Result<(), FrontError> {
        self.input.extend_from_slice(bytes);
        let mut at = 0;
        if !self.preface_seen {
            let have = self.input.len().min(PREFACE.len());
            if self.input[..have] != PREFACE[..have] {
                return Err(FrontError::NoPreface);
            }
            if have < PREFACE.len() {
                return Ok(());
            }
            out.extend_from_slice(PREFACE);
            self.preface_seen = true;
            at = PREFACE.len();
        }
        while self.input.len() - at >= FRAME_HEADER_LEN {
            let header = &self.input[at..at + FRAME_HEADER_LEN];
            let len = u32::from_be_bytes([0, header[0], header[1], header[2]]) as usize;
            let frame = Frame {
                kind: header[3],
                flags: header[4],
                stream: u32::from_be_bytes([header[5], header[6], header[7], header[8]]) & 0x7fff_ffff,
            };
            if len > MAX_FRAME_PAYLOAD {
                return Err(FrontError::FrameTooLarge(frame.stream, len));
            }
            if self.input.len() - at < FRAME_HEADER_LEN + len {
                break;
            }
            let payload_at = at + FRAME_HEADER_LEN;
            let end = payload_at + len;
            if self.pending.is_none() && frame.kind != TYPE_HEADERS && frame.kind != TYPE_CONTINUATION {
                out.extend_from_slice(&self.input[at..end]);
            } else {
                // Copied out so the handler may borrow `self` mutably.
                let payload = self.input[payload_at..end].to_vec();
                self.header_frame(frame, &payload, out)?;
            }
            at = end;
        }
        self.input.drain(..at);
        Ok(())
    }

    /// Handles a HEADERS or CONTINUATION frame, or any frame while a header
    /// block is open (which breaks the protocol).
    fn header_frame(&mut self, frame: Frame, payload: &[u8], out: &mut Vec<u8>) -> Result<(), FrontError> {
        match (&mut self.pending, frame.kind) {
            (Some(block), TYPE_CONTINUATION) if block.stream == frame.stream => {
                block.fragment.extend_from_slice(payload);
                if block.fragment.len() > MAX_HEADER_BLOCK {
                    return Err(FrontError::HeaderBlockTooLarge(frame.stream));
                }
            }
            (Some(block), kind) => return Err(FrontError::InterruptedHeaderBlock(block.stream, kind)),
            (None, TYPE_CONTINUATION) => return Err(FrontError::StrayContinuation(frame.stream)),
            (None, _) => self.pending = Some(start_block(frame, payload)?),
        }
        if frame.flags & FLAG_END_HEADERS != 0 {
            let block = self.pending.take().expect("a header block is pending");
            self.finish(block, out)?;
        }
        Ok(())
    }

    /// Decodes a complete header block, replaces an invalid authority and
    /// writes the block again as HEADERS (+ CONTINUATION) frames.
    fn finish(&mut self, block: PendingBlock, out: &mut Vec<u8>) -> Result<(), FrontError> {
        let mut encoded = Vec::with_capacity(block.fragment.len() + 64);
        if let Some(priority) = block.priority {
            encoded.extend_from_slice(&priority);
        }
        let mut replaced = false;
        self.decoder
            .decode_with_cb(&block.fragment, |name, value| {
                let value = if name.as_ref() == b":authority" && !valid_authority(&value) {
                    replaced = true;
                    Cow::Borrowed(REPLACEMENT)
                } else {
                    value
                };
                encode_literal(&name, &value, &mut encoded);
            })
            .map_err(|e| FrontError::Hpack(block.stream, e.to_string()))?;
        if replaced {
            self.rewritten += 1;
        }
        let mut first = true;
        let mut chunks = encoded.chunks(MAX_FRAME_PAYLOAD).peekable();
        while let Some(chunk) = chunks.next() {
            let last = chunks.peek().is_none();
            let (kind, mut flags) = if first {
                let mut flags = 0;
                if block.end_stream {
                    flags |= FLAG_END_STREAM;
                }
                if block.priority.is_some() {
                    flags |= FLAG_PRIORITY;
                }
                (TYPE_HEADERS, flags)
            } else {
                (TYPE_CONTINUATION, 0)
            };
            if last {
                flags |= FLAG_END_HEADERS;
            }
            write_frame_header(out, chunk.len(), kind, flags, block.stream);
            out.extend_from_slice(chunk);
            first = false;
        }
        if encoded.is_empty() {
            // An empty header block still needs its HEADERS frame.
            let flags = FLAG_END_HEADERS | if block.end_stream { FLAG_END_STREAM } else { 0 };
            write_frame_header(out, 0, TYPE_HEADERS, flags, block.stream);
        }
        Ok(())
    }
}

#[derive(Clone, Copy)]
struct Frame {
    kind: u8,
    flags: u8,
    stream: u32,
}

/// The header block fragment of a HEADERS frame, without padding; the
/// priority fields kept to be written again.
fn start_block(frame: Frame, payload: &[u8]) -> Result<PendingBlock, FrontError> {
    let malformed = || FrontError::MalformedHeaders(frame.stream);
    let mut body = payload;
    if frame.flags & FLAG_PADDED != 0 {
        let (&pad, rest) = body.split_first().ok_or_else(malformed)?;
        let keep = rest.len().checked_sub(pad as usize).ok_or_else(malformed)?;
        body = &rest[..keep];
    }
    let mut priority = None;
    if frame.flags & FLAG_PRIORITY != 0 {
        if body.len() < 5 {
            return Err(malformed());
        }
        let mut fields = [0u8; 5];
        fields.copy_from_slice(&body[..5]);
        priority = Some(fields);
        body = &body[5..];
    }
    Ok(PendingBlock {
        stream: frame.stream,
        end_stream: frame.flags & FLAG_END_STREAM != 0,
        priority,
        fragment: body.to_vec(),
    })
}

fn valid_authority(value: &[u8]) -> bool {
    tonic::codegen::http::uri::Authority::try_from(value).is_ok()
}

/// "Literal Header Field without Indexing — New Name" (RFC 7541 6.2.2)
/// with plain (not Huffman) strings.
fn encode_literal(name: &[u8], value: &[u8], out: &mut Vec<u8>) {
    out.push(0x00);
    for s in [name, value] {
        loona_hpack::encoder::encode_integer_into(s.len(), 7, 0, out).expect("writing to a Vec cannot fail");
        out.extend_from_slice(s);
    }
}

fn write_frame_header(out: &mut Vec<u8>, len: usize, kind: u8, flags: u8, stream: u32) {
    let len = len as u32;
    out.extend_from_slice(&len.to_be_bytes()[1..]);
    out.push(kind);
    out.push(flags);
    out.extend_from_slice(&stream.to_be_bytes());
}

/// Relays one client connection to the server's end: client bytes through
/// an [`AuthorityRewriter`], server bytes back unchanged. Returns when
/// either side closes; a client that breaks the protocol is disconnected
/// and logged.
pub async fn serve(client: tokio::net::UnixStream, server: tokio::io::DuplexStream) {
    let (mut client_rx, mut client_tx) = client.into_split();
    let (mut server_rx, mut server_tx) = tokio::io::split(server);
    let upstream = async {
        let mut rewriter = AuthorityRewriter::new();
        let mut buf = vec![0u8; 16 * 1024];
        let mut out = Vec::with_capacity(16 * 1024);
        loop {
            let n = client_rx.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            out.clear();
            if let Err(e) = rewriter.feed(&buf[..n], &mut out) {
                tracing::warn!(error = %e, "RouteControl client closed: bad HTTP/2");
                break;
            }
            server_tx.write_all(&out).await?;
        }
        if rewriter.rewritten() > 0 {
            tracing::debug!(
                requests = rewriter.rewritten(),
                "replaced invalid :authority from a client"
            );
        }
        server_tx.shutdown().await
    };
    let downstream = async {
        tokio::io::copy(&mut server_rx, &mut client_tx).await?;
        client_tx.shutdown().await
    };
    // Either direction ending ends the connection.
    let result: std::io::Result<()> = tokio::select! {
        r = upstream => r,
        r = downstream => r,
    };
    if let Err(e) = result {
        tracing::debug!(error = %e, "RouteControl client connection ended");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers_frame(stream: u32, flags: u8, block: &[u8]) -> Vec<u8> {
        let mut f = Vec::new();
        write_frame_header(&mut f, block.len(), TYPE_HEADERS, flags, stream);
        f.extend_from_slice(block);
        f
    }

    fn request_block(authority: &[u8]) -> Vec<u8> {
        let mut encoder = loona_hpack::Encoder::new();
        encoder.encode([
            (&b":method"[..], &b"POST"[..]),
            (b":scheme", b"http"),
            (b":path", b"/novaroute.v1.RouteControl/Register"),
            (b":authority", authority),
            (b"te", b"trailers"),
            (b"content-type", b"application/grpc"),
        ])
    }

    /// Splits `bytes` into frames; returns (type, flags, stream, payload).
    fn frames(mut bytes: &[u8]) -> Vec<(u8, u8, u32, Vec<u8>)> {
        let mut v = Vec::new();
        while !bytes.is_empty() {
            let len = u32::from_be_bytes([0, bytes[0], bytes[1], bytes[2]]) as usize;
            let stream = u32::from_be_bytes([bytes[5], bytes[6], bytes[7], bytes[8]]);
            v.push((bytes[3], bytes[4], stream, bytes[9..9 + len].to_vec()));
            bytes = &bytes[9 + len..];
        }
        v
    }

    fn decode_all(frames: &[(u8, u8, u32, Vec<u8>)]) -> Vec<(Vec<u8>, Vec<u8>)> {
        let block: Vec<u8> = frames.iter().flat_map(|f| f.3.clone()).collect();
        Decoder::new().decode(&block).unwrap()
    }

    #[test]
    fn invalid_authority_becomes_localhost_and_the_rest_is_kept() {
        let mut input = PREFACE.to_vec();
        input.extend(headers_frame(
            1,
            FLAG_END_HEADERS,
            &request_block(b"%2Frun%2Fnovaroute%2Fnovaroute.sock"),
        ));
        let data = [0u8, 0, 0, 0, 5, 1, 2, 3, 4, 5];
        let mut data_frame = Vec::new();
        write_frame_header(&mut data_frame, data.len(), 0x0, FLAG_END_STREAM, 1);
        data_frame.extend_from_slice(&data);
        input.extend(&data_frame);

        let mut r = AuthorityRewriter::new();
        let mut out = Vec::new();
        r.feed(&input, &mut out).unwrap();
        assert_eq!(&out[..PREFACE.len()], PREFACE);
        let got = frames(&out[PREFACE.len()..]);
        assert_eq!(got.len(), 2);
        assert_eq!((got[0].0, got[0].1, got[0].2), (TYPE_HEADERS, FLAG_END_HEADERS, 1));
        let headers = decode_all(&got[..1]);
        assert_eq!(headers[3], (b":authority".to_vec(), b"localhost".to_vec()));
        assert_eq!(headers[2].1, b"/novaroute.v1.RouteControl/Register");
        assert_eq!(headers.len(), 6);
        assert_eq!(&out[out.len() - data_frame.len()..], &data_frame[..]);
        assert_eq!(r.rewritten(), 1);
    }

    #[test]
    fn unencoded_socket_path_is_replaced_and_a_valid_authority_kept() {
        for (authority, expect) in [
            (&b"/run/novaroute/novaroute.sock"[..], &b"localhost"[..]),
            (b"localhost:50051", b"localhost:50051"),
        ] {
            let mut input = PREFACE.to_vec();
            input.extend(headers_frame(3, FLAG_END_HEADERS, &request_block(authority)));
            let mut out = Vec::new();
            AuthorityRewriter::new().feed(&input, &mut out).unwrap();
            let headers = decode_all(&frames(&out[PREFACE.len()..]));
            assert_eq!(headers[3].1, expect);
        }
    }

    #[test]
    fn hpack_state_is_followed_across_blocks_fed_byte_by_byte() {
        // The client's encoder indexes headers; the second request refers to
        // the first one's entries, so the decoder must have seen the first.
        let mut encoder = loona_hpack::Encoder::new();
        let mut input = PREFACE.to_vec();
        for stream in [1u32, 3] {
            let block = encoder.encode([
                (&b":method"[..], &b"POST"[..]),
                (b":authority", b"/run/x.sock"),
                (b"x-owner", b"novaedge"),
            ]);
            input.extend(headers_frame(stream, FLAG_END_HEADERS | FLAG_END_STREAM, &block));
        }
        let mut r = AuthorityRewriter::new();
        let mut out = Vec::new();
        for b in &input {
            r.feed(std::slice::from_ref(b), &mut out).unwrap();
        }
        let got = frames(&out[PREFACE.len()..]);
        assert_eq!(got.len(), 2);
        // Each block stands alone: the server's decoder needs no state.
        for f in &got {
            assert_eq!(f.1, FLAG_END_HEADERS | FLAG_END_STREAM);
            let headers = decode_all(std::slice::from_ref(f));
            assert_eq!(headers[1].1, b"localhost");
            assert_eq!(headers[2], (b"x-owner".to_vec(), b"novaedge".to_vec()));
        }
        assert_eq!(r.rewritten(), 2);
    }

    #[test]
    fn padded_priority_and_continuation_frames_are_joined_and_split_at_the_frame_limit() {
        let big = vec![b'v'; 20_000];
        let mut encoder = loona_hpack::Encoder::new();
        let block = encoder.encode([(&b":authority"[..], &b"/run/x.sock"[..]), (b"x-big", &big)]);
        let (a, b) = block.split_at(100);
        let mut payload = vec![3u8]; // pad length
        payload.extend_from_slice(&[0x80, 0, 0, 1, 16]); // exclusive dependency on 1, weight 16
        payload.extend_from_slice(a);
        payload.extend_from_slice(&[0, 0, 0]);
        let mut input = PREFACE.to_vec();
        input.extend(headers_frame(5, FLAG_PADDED | FLAG_PRIORITY, &payload));
        let (b1, b2) = b.split_at(MAX_FRAME_PAYLOAD);
        write_frame_header(&mut input, b1.len(), TYPE_CONTINUATION, 0, 5);
        input.extend_from_slice(b1);
        write_frame_header(&mut input, b2.len(), TYPE_CONTINUATION, FLAG_END_HEADERS, 5);
        input.extend_from_slice(b2);

        let mut out = Vec::new();
        AuthorityRewriter::new().feed(&input, &mut out).unwrap();
        let got = frames(&out[PREFACE.len()..]);
        assert_eq!(got.len(), 2, "20 kB of headers need two frames of at most 16 KiB");
        assert_eq!((got[0].0, got[0].1), (TYPE_HEADERS, FLAG_PRIORITY));
        assert_eq!((got[1].0, got[1].1), (TYPE_CONTINUATION, FLAG_END_HEADERS));
        assert!(got.iter().all(|f| f.3.len() <= MAX_FRAME_PAYLOAD));
        assert_eq!(&got[0].3[..5], &[0x80, 0, 0, 1, 16]);
        let mut block: Vec<u8> = got[0].3[5..].to_vec();
        block.extend_from_slice(&got[1].3);
        let headers = Decoder::new().decode(&block).unwrap();
        assert_eq!(headers[0].1, b"localhost");
        assert_eq!(headers[1].1, big);
    }

    #[test]
    fn protocol_violations_close_the_connection_with_a_reason() {
        let mut out = Vec::new();
        assert_eq!(
            AuthorityRewriter::new().feed(b"GET / HTTP/1.1\r\n", &mut out),
            Err(FrontError::NoPreface)
        );

        let mut input = PREFACE.to_vec();
        write_frame_header(&mut input, 0, TYPE_CONTINUATION, FLAG_END_HEADERS, 1);
        assert_eq!(
            AuthorityRewriter::new().feed(&input, &mut out),
            Err(FrontError::StrayContinuation(1))
        );

        let mut input = PREFACE.to_vec();
        input.extend(headers_frame(1, 0, &request_block(b"x")));
        write_frame_header(&mut input, 0, 0x0, 0, 1);
        assert_eq!(
            AuthorityRewriter::new().feed(&input, &mut out),
            Err(FrontError::InterruptedHeaderBlock(1, 0x0))
        );

        let mut input = PREFACE.to_vec();
        input.extend(headers_frame(1, FLAG_END_HEADERS | FLAG_PADDED, &[9, 1, 2]));
        assert_eq!(
            AuthorityRewriter::new().feed(&input, &mut out),
            Err(FrontError::MalformedHeaders(1))
        );

        // A frame larger than the server accepts is refused from its header
        // alone: nothing of its 16 MiB is waited for or buffered.
        let mut input = PREFACE.to_vec();
        write_frame_header(&mut input, (1 << 24) - 1, TYPE_HEADERS, FLAG_END_HEADERS, 1);
        assert_eq!(
            AuthorityRewriter::new().feed(&input, &mut out),
            Err(FrontError::FrameTooLarge(1, (1 << 24) - 1))
        );
        let mut input = PREFACE.to_vec();
        write_frame_header(&mut input, MAX_FRAME_PAYLOAD + 1, 0x0, 0, 1);
        assert_eq!(
            AuthorityRewriter::new().feed(&input, &mut out),
            Err(FrontError::FrameTooLarge(1, MAX_FRAME_PAYLOAD + 1))
        );

        // A header block grows through CONTINUATIONs only to its limit.
        let mut input = PREFACE.to_vec();
        input.extend(headers_frame(1, 0, &[0u8; MAX_FRAME_PAYLOAD]));
        for _ in 0..MAX_HEADER_BLOCK / MAX_FRAME_PAYLOAD {
            write_frame_header(&mut input, MAX_FRAME_PAYLOAD, TYPE_CONTINUATION, 0, 1);
            input.extend_from_slice(&[0u8; MAX_FRAME_PAYLOAD]);
        }
        assert_eq!(
            AuthorityRewriter::new().feed(&input, &mut out),
            Err(FrontError::HeaderBlockTooLarge(1))
        );

        let mut input = PREFACE.to_vec();
        input.extend(headers_frame(1, FLAG_END_HEADERS, &[0xff, 0xff, 0xff, 0xff, 0x7f]));
        assert!(matches!(
            AuthorityRewriter::new().feed(&input, &mut out),
            Err(FrontError::Hpack(1, _))
        ));
    }
}
