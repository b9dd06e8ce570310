//! gRPC unary calls through Envoy: an upstream that answers every call and says which
//! side it is, and the calling side, both on the `h2` crate (no protobuf: gRPC's
//! framing carries any bytes, and Envoy routes without reading them).

use std::io;
use std::net::{SocketAddr, TcpListener as StdListener};
use std::sync::Arc;

use bytes::Bytes;
use h2::server::SendResponse;
use h2::RecvStream;
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Runtime;

use crate::http2::client::{header_map, read_body};
use crate::http2::{Client, Reply, Request};

/// The content type of a gRPC call and its response.
pub const CONTENT_TYPE: &str = "application/grpc";

/// The trailer every answer of an [`Upstream`] carries besides `grpc-status`: its side.
pub const SIDE_TRAILER: &str = "x-upstream-side";

/// A gRPC message on the wire: uncompressed flag, 4-byte big-endian length, bytes.
pub fn encode_message(message: &[u8]) -> Vec<u8> {
    let length = u32::try_from(message.len())
        .unwrap_or_else(|_| panic!("a {}-byte gRPC message", message.len()));
    let mut out = Vec::with_capacity(5 + message.len());
    out.push(0);
    out.extend_from_slice(&length.to_be_bytes());
    out.extend_from_slice(message);
    out
}

/// The one uncompressed message a unary body holds; `None` for an empty body, an
/// error for anything else.
pub fn decode_message(body: &[u8]) -> io::Result<Option<Vec<u8>>> {
    if body.is_empty() {
        return Ok(None);
    }
    let invalid = |what: String| io::Error::new(io::ErrorKind::InvalidData, what);
    let (head, rest) = body
        .split_at_checked(5)
        .ok_or_else(|| invalid(format!("gRPC body of {} bytes", body.len())))?;
    let length = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
    if head[0] != 0 || rest.len() != length {
        return Err(invalid(format!(
            "gRPC message: flag {}, length {length}, {} bytes follow",
            head[0],
            rest.len()
        )));
    }
    Ok(Some(rest.to_vec()))
}

/// A gRPC server standing in for one side of the ramp. Every call, whatever its path,
/// is answered `200` with headers `x-served-by: <side>` and `x-seen-route: <the route
/// header's value, if the request had one>`, the message `<side>:<request message>`,
/// and the trailers `grpc-status: 0` and `x-upstream-side: <side>`.
pub struct Upstream {
    addr: SocketAddr,
    // Dropping the runtime stops the server.
    _runtime: Runtime,
}

/// What an upstream says about itself and which request header it echoes.
struct Identity {
    side: String,
    route_header: String,
}

impl Upstream {
    /// Starts the `side` upstream on a free loopback port; it echoes `route_header`.
    pub fn start(side: &str, route_header: &str) -> Upstream {
        let listener = StdListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.set_nonblocking(true).map(|()| listener))
            .unwrap_or_else(|err| panic!("cannot bind the {side} gRPC upstream: {err}"));
        let addr = listener
            .local_addr()
            .unwrap_or_else(|err| panic!("the {side} gRPC upstream's address: {err}"));
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap_or_else(|err| panic!("cannot start a tokio runtime: {err}"));
        let identity = Arc::new(Identity {
            side: side.to_owned(),
            route_header: route_header.to_owned(),
        });
        let listener = {
            let _context = runtime.enter();
            TcpListener::from_std(listener)
                .unwrap_or_else(|err| panic!("the {side} gRPC upstream's listener: {err}"))
        };
        runtime.spawn(serve(listener, identity));
        Upstream {
            addr,
            _runtime: runtime,
        }
    }

    /// Where the upstream listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

async fn serve(listener: TcpListener, identity: Arc<Identity>) {
    loop {
        if let Ok((socket, _)) = listener.accept().await {
            tokio::spawn(serve_connection(socket, identity.clone()));
        }
    }
}

async fn serve_connection(socket: TcpStream, identity: Arc<Identity>) {
    let Ok(mut connection) = h2::server::handshake(socket).await else {
        return;
    };
    // Accepting also drives the connection, so answers go out while it loops.
    while let Some(Ok((request, respond))) = connection.accept().await {
        tokio::spawn(answer(request, respond, identity.clone()));
    }
}

async fn answer(
    request: http::Request<RecvStream>,
    mut respond: SendResponse<Bytes>,
    identity: Arc<Identity>,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let (parts, body) = request.into_parts();
    let (body, _) = read_body(body).await?;
    let message = decode_message(&body)?.unwrap_or_default();
    let mut head = http::Response::builder()
        .status(200)
        .header("content-type", CONTENT_TYPE)
        .header("x-served-by", &identity.side);
    if let Some(route) = parts.headers.get(&identity.route_header) {
        head = head.header("x-seen-route", route);
    }
    let mut stream = respond.send_response(head.body(())?, false)?;
    let mut reply = format!("{}:", identity.side).into_bytes();
    reply.extend_from_slice(&message);
    stream.send_data(Bytes::from(encode_message(&reply)), false)?;
    stream.send_trailers(header_map(&[
        ("grpc-status", "0"),
        (SIDE_TRAILER, &identity.side),
    ])?)?;
    Ok(())
}

/// A unary call's result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnaryReply {
    /// The HTTP/2 response, trailers included.
    pub reply: Reply,
    /// The response message, if the body held one.
    pub message: Option<Vec<u8>>,
}

impl UnaryReply {
    /// `grpc-status`: from the trailers, or from the headers of a trailers-only
    /// response (how Envoy answers a call it ends itself).
    pub fn grpc_status(&self) -> Option<u32> {
        self.reply
            .trailer("grpc-status")
            .or_else(|| self.reply.header("grpc-status"))
            .and_then(|status| status.parse().ok())
    }

    /// `grpc-message`, from the trailers or a trailers-only response's headers.
    pub fn grpc_message(&self) -> Option<&str> {
        self.reply
            .trailer("grpc-message")
            .or_else(|| self.reply.header("grpc-message"))
    }
}

/// Calls `path` (`/package.Service/Method`) with `metadata` and one request message;
/// panics unless a response arrives with a well-framed body.
pub fn unary(
    client: &mut Client,
    path: &str,
    metadata: &[(&str, &str)],
    message: &[u8],
) -> UnaryReply {
    let mut headers = vec![("content-type", CONTENT_TYPE), ("te", "trailers")];
    headers.extend_from_slice(metadata);
    let body = encode_message(message);
    let reply = client
        .send(&Request {
            method: "POST",
            path,
            headers: &headers,
            body: &body,
            trailers: &[],
        })
        .unwrap_or_else(|err| panic!("gRPC call {path} failed: {err}"));
    let message =
        decode_message(&reply.body).unwrap_or_else(|err| panic!("gRPC call {path}: {err}"));
    UnaryReply { reply, message }
}
