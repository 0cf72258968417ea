//! Hand-built BGP messages for scripted peers: bytes written as hex, the
//! message header around a body, and reading one whole message.

use std::io::Read;
use std::net::TcpStream;

/// Bytes from hex with any whitespace between them.
pub fn hex(s: &str) -> Vec<u8> {
    let s: String = s.split_whitespace().collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

/// A BGP message of this type around `body`.
pub fn message(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut m = vec![0xff; 16];
    m.extend_from_slice(&((19 + body.len()) as u16).to_be_bytes());
    m.push(kind);
    m.extend_from_slice(body);
    m
}

/// The KEEPALIVE message.
pub fn keepalive() -> Vec<u8> {
    message(4, &[])
}

/// Reads one whole BGP message: (type, body).
pub fn read_message(s: &mut TcpStream) -> (u8, Vec<u8>) {
    let mut head = [0u8; 19];
    s.read_exact(&mut head).expect("message header");
    let len = u16::from_be_bytes([head[16], head[17]]) as usize;
    let mut body = vec![0; len - 19];
    s.read_exact(&mut body).expect("message body");
    (head[18], body)
}
