//! A conforming HTTP/2 client on the `h2` crate: h2c with prior knowledge, many
//! requests as streams of one connection (HPACK's dynamic table in use), bodies and
//! request trailers, and the response's trailers kept. Blocking calls over a
//! single-threaded tokio runtime, so tests stay plain functions.

use std::io;
use std::net::SocketAddr;

use bytes::Bytes;
use h2::client::{ResponseFuture, SendRequest};
use h2::RecvStream;
use http::{HeaderMap, HeaderName, HeaderValue};
use tokio::runtime::Runtime;

use crate::Response;

/// Framing overhead of small DATA frames the client buffers before giving up on the
/// connection (h2's `data_frame_budget`): room for tens of thousands of streams in flight.
const DATA_FRAME_BUDGET: usize = 16 << 20;

/// One request: the method and path, header fields (pseudo-headers come from these
/// and the client's address), an optional body and request trailers.
#[derive(Clone, Copy, Debug, Default)]
pub struct Request<'a> {
    /// `:method`.
    pub method: &'a str,
    /// `:path`.
    pub path: &'a str,
    /// Regular header fields, in order (names lowercase, as HTTP/2 requires).
    pub headers: &'a [(&'a str, &'a str)],
    /// The body; none when empty.
    pub body: &'a [u8],
    /// Trailer fields sent after the body; none when empty.
    pub trailers: &'a [(&'a str, &'a str)],
}

impl<'a> Request<'a> {
    /// `GET path` with `headers`.
    pub fn get(path: &'a str, headers: &'a [(&'a str, &'a str)]) -> Request<'a> {
        Request {
            method: "GET",
            path,
            headers,
            ..Request::default()
        }
    }
}

/// A response as received: binary body and trailers included.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    /// `:status`.
    pub status: u16,
    /// Header fields, grouped by name (several values of a name as several entries).
    pub headers: Vec<(String, String)>,
    /// The DATA frames' bytes.
    pub body: Vec<u8>,
    /// Trailer fields (empty when the response had none).
    pub trailers: Vec<(String, String)>,
}

impl Reply {
    /// The first value of header `name` (lowercase).
    pub fn header(&self, name: &str) -> Option<&str> {
        find(&self.headers, name)
    }

    /// The first value of trailer `name` (lowercase).
    pub fn trailer(&self, name: &str) -> Option<&str> {
        find(&self.trailers, name)
    }

    /// Status, headers and text body, as the HTTP/1.1 client answers (trailers dropped).
    pub fn into_response(self) -> Response {
        Response {
            status: self.status,
            headers: self.headers,
            body: String::from_utf8_lossy(&self.body).into_owned(),
        }
    }
}

fn find<'a>(fields: &'a [(String, String)], name: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.as_str())
}

/// An HTTP/2 client for one address; it connects on the first request and reuses the
/// connection, opening a new one when Envoy has closed it.
pub struct Client {
    addr: SocketAddr,
    runtime: Runtime,
    sender: Option<SendRequest<Bytes>>,
    connections: u64,
}

impl Client {
    /// A client for `addr`.
    pub fn new(addr: SocketAddr) -> Client {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap_or_else(|err| panic!("cannot start a tokio runtime: {err}"));
        Client {
            addr,
            runtime,
            sender: None,
            connections: 0,
        }
    }

    /// How many HTTP/2 connections the client has established (reconnections
    /// included).
    pub fn connections(&self) -> u64 {
        self.connections
    }

    /// `GET path` with `headers`; panics unless a response arrives.
    pub fn get(&mut self, path: &str, headers: &[(&str, &str)]) -> Response {
        self.send(&Request::get(path, headers))
            .unwrap_or_else(|err| panic!("HTTP/2 GET {path} on {} failed: {err}", self.addr))
            .into_response()
    }

    /// Sends `request` as a new stream and reads the whole response. The error is the
    /// connection's or the stream's (e.g. Envoy resetting it).
    pub fn send(&mut self, request: &Request) -> io::Result<Reply> {
        self.send_all(std::slice::from_ref(request))
            .pop()
            .unwrap_or_else(|| Err(io::Error::other("no reply")))
    }

    /// Sends every request at once, each on its own stream of one connection, then
    /// reads the responses: the streams are in flight together (multiplexed).
    pub fn send_all(&mut self, requests: &[Request]) -> Vec<io::Result<Reply>> {
        let heads: Vec<io::Result<http::Request<()>>> =
            requests.iter().map(|request| self.head(request)).collect();
        let mut sender = match self.ready() {
            Ok(sender) => sender,
            Err(err) => return requests.iter().map(|_| Err(copy(&err))).collect(),
        };
        self.runtime.block_on(async move {
            let mut pending = Vec::with_capacity(requests.len());
            for (request, head) in requests.iter().zip(heads) {
                let started = match head {
                    Ok(head) => start(&mut sender, head, request).await,
                    Err(err) => Err(err),
                };
                pending.push(started);
            }
            let mut replies = Vec::with_capacity(pending.len());
            for started in pending {
                replies.push(match started {
                    Ok(response) => finish(response).await,
                    Err(err) => Err(err),
                });
            }
            replies
        })
    }

    /// A ready stream sender: the kept connection's, or a new connection's.
    fn ready(&mut self) -> io::Result<SendRequest<Bytes>> {
        if let Some(sender) = self.sender.take() {
            // A closed connection fails here, before anything was sent on it.
            if let Ok(ready) = self.runtime.block_on(sender.ready()) {
                self.sender = Some(ready.clone());
                return Ok(ready);
            }
        }
        let addr = self.addr;
        let (sender, connection) = self
            .runtime
            .block_on(async move {
                let tcp = tokio::net::TcpStream::connect(addr).await?;
                tcp.set_nodelay(true)?;
                h2::client::Builder::new()
                    // `send_all` reads the responses in order while the others arrive:
                    // their small DATA frames wait in h2's buffer, which by default
                    // closes the connection after about a hundred of them.
                    .data_frame_budget(DATA_FRAME_BUDGET)
                    .handshake(tcp)
                    .await
                    .map_err(io::Error::other)
            })
            .map_err(|err| io::Error::other(format!("HTTP/2 connection to {addr}: {err}")))?;
        self.connections += 1;
        // Driven whenever the runtime runs, i.e. during each request.
        self.runtime.spawn(async move {
            let _ = connection.await;
        });
        let ready = self
            .runtime
            .block_on(sender.ready())
            .map_err(io::Error::other)?;
        self.sender = Some(ready.clone());
        Ok(ready)
    }

    fn head(&self, request: &Request) -> io::Result<http::Request<()>> {
        let mut builder = http::Request::builder()
            .method(request.method)
            .uri(format!("http://{}{}", self.addr, request.path));
        for (name, value) in request.headers {
            builder = builder.header(*name, *value);
        }
        builder.body(()).map_err(io::Error::other)
    }
}

/// Opens a stream for `head` and sends the request's body and trailers (buffered: the
/// connection sends them as its windows allow).
async fn start(
    sender: &mut SendRequest<Bytes>,
    head: http::Request<()>,
    request: &Request<'_>,
) -> io::Result<ResponseFuture> {
    std::future::poll_fn(|cx| sender.poll_ready(cx))
        .await
        .map_err(io::Error::other)?;
    let headers_only = request.body.is_empty() && request.trailers.is_empty();
    let (response, mut stream) = sender
        .send_request(head, headers_only)
        .map_err(io::Error::other)?;
    if !request.body.is_empty() {
        stream
            .send_data(
                Bytes::copy_from_slice(request.body),
                request.trailers.is_empty(),
            )
            .map_err(io::Error::other)?;
    }
    if !request.trailers.is_empty() {
        let trailers = header_map(request.trailers).map_err(io::Error::other)?;
        stream.send_trailers(trailers).map_err(io::Error::other)?;
    }
    Ok(response)
}

/// The response of a started stream, read to the end.
async fn finish(response: ResponseFuture) -> io::Result<Reply> {
    let (parts, received) = response.await.map_err(io::Error::other)?.into_parts();
    let (body, trailers) = read_body(received).await.map_err(io::Error::other)?;
    Ok(Reply {
        status: parts.status.as_u16(),
        headers: fields(&parts.headers),
        body,
        trailers: trailers.as_ref().map(fields).unwrap_or_default(),
    })
}

/// The error code of the RST_STREAM or GOAWAY that ended a request [`Client::send`]
/// failed with, if that is what happened.
pub fn reset_code(err: &io::Error) -> Option<u32> {
    let h2 = err.get_ref()?.downcast_ref::<h2::Error>()?;
    h2.reason().map(u32::from)
}

/// The error code of the RST_STREAM the peer ended a request's stream with, if that is
/// what [`Client::send`] failed with (not a GOAWAY, nor a reset of the client's own).
pub fn peer_reset_code(err: &io::Error) -> Option<u32> {
    let h2 = err.get_ref()?.downcast_ref::<h2::Error>()?;
    h2.reason()
        .filter(|_| h2.is_reset() && h2.is_remote())
        .map(u32::from)
}

fn copy(err: &io::Error) -> io::Error {
    io::Error::new(err.kind(), err.to_string())
}

/// Reads a stream's DATA to the end, returning the flow-control window as it goes,
/// then its trailers.
pub(crate) async fn read_body(
    mut stream: RecvStream,
) -> Result<(Vec<u8>, Option<HeaderMap>), h2::Error> {
    let mut body = Vec::new();
    while let Some(chunk) = stream.data().await {
        let chunk = chunk?;
        body.extend_from_slice(&chunk);
        let _ = stream.flow_control().release_capacity(chunk.len());
    }
    Ok((body, stream.trailers().await?))
}

/// `(name, value)` pairs as a header map, repeats kept.
pub(crate) fn header_map(pairs: &[(&str, &str)]) -> Result<HeaderMap, http::Error> {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.append(
            HeaderName::from_bytes(name.as_bytes())?,
            HeaderValue::from_str(value)?,
        );
    }
    Ok(map)
}

fn fields(map: &HeaderMap) -> Vec<(String, String)> {
    map.iter()
        .map(|(name, value)| {
            (
                name.as_str().to_owned(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            )
        })
        .collect()
}
