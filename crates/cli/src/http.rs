//! A small HTTP/1.1 GET client for plain-http endpoints inside the cluster: Envoy's
//! admin interface, Prometheus, and a service that serves the live config snapshot.
//!
//! Std only: one request per connection (`Connection: close`), a connect and a read
//! timeout, `Content-Length` or chunked bodies, and errors that name the URL.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

/// How long connecting, and each read or write, may take.
pub const TIMEOUT: Duration = Duration::from_secs(5);

/// Largest response accepted; a snapshot or a stats page is far smaller.
const MAX_RESPONSE_BYTES: u64 = 64 << 20;

/// A parsed `http://host[:port]/path?query` URL.
#[derive(Debug)]
struct Url<'a> {
    host: &'a str,
    port: u16,
    target: &'a str,
}

fn parse_url(url: &str) -> Result<Url<'_>, String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("{url}: only http:// URLs are supported"))?;
    let (authority, target) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port)) if !host.ends_with(']') || host.starts_with('[') => (
            host,
            port.parse::<u16>()
                .map_err(|_| format!("{url}: port `{port}` is not a number"))?,
        ),
        _ => (authority, 80),
    };
    if host.is_empty() {
        return Err(format!("{url}: no host"));
    }
    Ok(Url { host, port, target })
}

/// GETs `url` and returns the body of a 2xx response.
pub fn get(url: &str) -> Result<Vec<u8>, String> {
    let parsed = parse_url(url)?;
    let host = parsed.host.trim_start_matches('[').trim_end_matches(']');
    let addrs = (host, parsed.port)
        .to_socket_addrs()
        .map_err(|e| format!("GET {url}: cannot resolve {host}: {e}"))?;
    let mut last_error = format!("GET {url}: {host} has no address");
    let mut stream = None;
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, TIMEOUT) {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) => last_error = format!("GET {url}: cannot connect to {addr}: {e}"),
        }
    }
    let mut stream = stream.ok_or(last_error)?;
    let io = |e: std::io::Error| format!("GET {url}: {e}");
    stream.set_read_timeout(Some(TIMEOUT)).map_err(io)?;
    stream.set_write_timeout(Some(TIMEOUT)).map_err(io)?;
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nAccept: */*\r\nUser-Agent: rampart/{}\r\nConnection: close\r\n\r\n",
        parsed.target,
        parsed.host,
        env!("CARGO_PKG_VERSION")
    );
    stream.write_all(request.as_bytes()).map_err(io)?;
    let mut response = Vec::new();
    stream
        .take(MAX_RESPONSE_BYTES)
        .read_to_end(&mut response)
        .map_err(io)?;
    parse_response(&response).map_err(|e| format!("GET {url}: {e}"))
}

/// The body of a complete HTTP/1.1 response, or why it is not a usable one.
fn parse_response(response: &[u8]) -> Result<Vec<u8>, String> {
    let head_end = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("the response ended before its headers did")?;
    let head = std::str::from_utf8(&response[..head_end])
        .map_err(|_| "the response headers are not UTF-8".to_owned())?;
    let body = &response[head_end + 4..];
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("malformed status line `{status_line}`"))?;
    let mut chunked = false;
    let mut length = None;
    for line in lines {
        if let Some((name, value)) = line.split_once(':') {
            let value = value.trim();
            if name.eq_ignore_ascii_case("transfer-encoding") {
                chunked = value.to_ascii_lowercase().contains("chunked");
            } else if name.eq_ignore_ascii_case("content-length") {
                length = value.parse::<usize>().ok();
            }
        }
    }
    let body = if chunked {
        dechunk(body)?
    } else if let Some(n) = length {
        body.get(..n)
            .ok_or_else(|| format!("the body ended after {} of {n} bytes", body.len()))?
            .to_vec()
    } else {
        body.to_vec()
    };
    if !(200..300).contains(&status) {
        let text = String::from_utf8_lossy(&body);
        let first_line = text.trim().lines().next().unwrap_or_default();
        let shown: String = first_line.chars().take(200).collect();
        return Err(format!("HTTP {status}: {shown}"));
    }
    Ok(body)
}

fn dechunk(mut body: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let line_end = body
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or("a chunk size line is cut off")?;
        let size_text = std::str::from_utf8(&body[..line_end]).unwrap_or_default();
        let size_text = size_text.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| format!("malformed chunk size `{size_text}`"))?;
        body = &body[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        let chunk = body.get(..size).ok_or("a chunk is cut off")?;
        out.extend_from_slice(chunk);
        body = body.get(size + 2..).ok_or("a chunk is cut off")?;
    }
}

/// Percent-encodes `text` for a URL query value (everything but RFC 3986 unreserved).
pub fn encode_query(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 3);
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_into_host_port_and_target() {
        let u = parse_url("http://127.0.0.1:9901/stats?x=1").unwrap();
        assert_eq!(
            (u.host, u.port, u.target),
            ("127.0.0.1", 9901, "/stats?x=1")
        );
        let u = parse_url("http://prometheus").unwrap();
        assert_eq!((u.host, u.port, u.target), ("prometheus", 80, "/"));
        assert!(parse_url("https://x/")
            .unwrap_err()
            .contains("only http://"));
        assert!(parse_url("http://x:y/").unwrap_err().contains("port `y`"));
    }

    #[test]
    fn bodies_by_length_and_by_chunks() {
        let r = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabcdef";
        assert_eq!(parse_response(r).unwrap(), b"abc");
        let r = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n";
        assert_eq!(parse_response(r).unwrap(), b"abcde");
        let r = b"HTTP/1.1 404 Not Found\r\nContent-Length: 4\r\n\r\nnope";
        assert_eq!(parse_response(r).unwrap_err(), "HTTP 404: nope");
        assert!(parse_response(b"HTTP/1.1 200 OK\r\n").is_err());
    }

    #[test]
    fn query_values_are_percent_encoded() {
        assert_eq!(
            encode_query(r#"sum(rampart_requests{rampart_contract="a-b"})"#),
            "sum%28rampart_requests%7Brampart_contract%3D%22a-b%22%7D%29"
        );
    }
}
