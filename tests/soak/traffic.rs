//! The soak's traffic: request kinds drawn at random, the same on both protocols as far
//! as each can carry them, and the client threads that send them over HTTP/1.1 or
//! HTTP/2 and check every answer against what the contract allows.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, JoinHandle};

use rampart_test_support as support;
use support::http2::frame::{error_code, header_block, header_frames};
use support::http2::raw::{get_fields, Outcome, RawConnection};
use support::http2::{self, peer_reset_code, Request};
use support::rng::Rng;
use support::FLAGS;
use support::{raw_request, try_get_raw, Client, Response};

/// The example contract's locked flags, as a client sends them.
/// The locked flags with a key twice: no valid JSON document for the filter.
const DUPLICATE_KEYS: &str =
    r#"{"checkout_v2":true,"checkout_v2":true,"currency":"EUR","max_items":50}"#;
/// The percents the contract cycles through; a canary answer is allowed only for users
/// whose bucket is below the largest (a request may race a publish).
pub const PERCENTS: [u16; 2] = [30, 50];
/// The streams an HTTP/2 client keeps in flight together on its connection.
pub const STREAMS: usize = 8;
/// A config value over the example's `max_input_bytes` (8192).
const OVERSIZED_CONFIG: usize = 9000;
/// A header over Envoy's `max_request_headers_kb` (60 KiB).
const OVERSIZED_HEADER: usize = 64 * 1024;

/// The protocol a client speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Protocol {
    /// HTTP/1.1: one request at a time on a keep-alive connection.
    Http1,
    /// HTTP/2 over cleartext (h2c, prior knowledge): [`STREAMS`] streams at a time.
    Http2,
}

impl Protocol {
    /// Both, in the order the figures list them.
    pub const ALL: [Protocol; 2] = [Protocol::Http1, Protocol::Http2];

    /// The protocol's name in the figures.
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Http1 => "HTTP/1.1",
            Protocol::Http2 => "HTTP/2",
        }
    }

    /// The word Envoy's stats use for it (`downstream_rq_http1_total`, ...).
    pub fn stat(self) -> &'static str {
        match self {
            Protocol::Http1 => "http1",
            Protocol::Http2 => "http2",
        }
    }
}

/// What a request carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// The locked config and tier.
    Matching,
    /// A drifted tier.
    TierDrift,
    /// Drifted flags.
    FlagsDrift,
    /// No tier.
    TierMissing,
    /// Drifted flags with a forged canary route header.
    ForgedRoute,
    /// The flags with a key twice.
    DuplicateKeys,
    /// A config value over the filter's `max_input_bytes`.
    OversizedConfig,
    /// HTTP/1.1: a sticky key and a config that are not UTF-8 (raw bytes, on a
    /// connection of its own). HTTP/2 (whose client library sends text only): the
    /// config header twice in one header block.
    Garbled,
    /// No sticky key, with a forged canary route header.
    Unkeyed,
    /// Refused by Envoy's codec before any filter runs, on a connection of its own.
    /// HTTP/1.1: a NUL byte in a value (400, connection closed). HTTP/2: an uppercase
    /// header name (the connection closed without a response).
    Refused,
    /// HTTP/2 only: a header list over Envoy's limit, which resets the stream and keeps
    /// the connection.
    TooLarge,
}

impl Kind {
    /// The kind for the random number `n`: 50% matching, 25% drifting or missing, 24%
    /// hostile, 1% refused by the codec (on HTTP/2, half of that 1% a header list too
    /// large).
    fn draw(n: u64, protocol: Protocol) -> Kind {
        match n % 200 {
            0..=99 => Kind::Matching,
            100..=119 => Kind::TierDrift,
            120..=135 => Kind::FlagsDrift,
            136..=149 => Kind::TierMissing,
            150..=159 => Kind::ForgedRoute,
            160..=169 => Kind::DuplicateKeys,
            170..=177 => Kind::OversizedConfig,
            178..=185 => Kind::Garbled,
            186..=197 => Kind::Unkeyed,
            198 => Kind::Refused,
            _ if protocol == Protocol::Http2 => Kind::TooLarge,
            _ => Kind::Refused,
        }
    }

    /// The class the figures count it under.
    fn class(self) -> &'static str {
        match self {
            Kind::Matching => "matching",
            Kind::TierDrift | Kind::FlagsDrift => "drift",
            Kind::TierMissing => "missing",
            Kind::ForgedRoute | Kind::DuplicateKeys | Kind::OversizedConfig | Kind::Garbled => {
                "hostile"
            }
            Kind::Unkeyed => "unkeyed",
            Kind::Refused => "refused",
            Kind::TooLarge => "too large",
        }
    }
}

/// The long values some kinds carry, made once per client.
struct Payloads {
    config: String,
    header: String,
}

impl Payloads {
    fn new() -> Payloads {
        Payloads {
            config: format!(r#"{{"pad":"{}"}}"#, "x".repeat(OVERSIZED_CONFIG)),
            header: "p".repeat(OVERSIZED_HEADER),
        }
    }
}

/// One request to send: its kind and its user.
struct Pick {
    kind: Kind,
    user: String,
    bucket: u16,
}

impl Pick {
    fn draw(rng: &mut Rng, protocol: Protocol) -> Pick {
        let n = rng.next();
        let user = format!("soak-{}", n % 100_000);
        Pick {
            kind: Kind::draw(n >> 32, protocol),
            bucket: rampart::bucket::bucket("checkout-v2", user.as_bytes()),
            user,
        }
    }

    /// The header fields of the request as text (HTTP/1.1's `Garbled` is raw bytes:
    /// [`http1`] writes it itself).
    fn fields<'a>(&'a self, payloads: &'a Payloads) -> Vec<(&'a str, &'a str)> {
        let user = self.user.as_str();
        let keyed = |config: &'a str, tier: &'a str| {
            vec![
                ("x-user-id", user),
                ("x-user-config", config),
                ("x-tenant-tier", tier),
            ]
        };
        let with = |mut fields: Vec<(&'a str, &'a str)>, name: &'a str, value: &'a str| {
            fields.push((name, value));
            fields
        };
        match self.kind {
            Kind::Matching => keyed(FLAGS, "gold"),
            Kind::TierDrift => keyed(FLAGS, "silver"),
            Kind::FlagsDrift => keyed(r#"{"checkout_v2":false}"#, "gold"),
            Kind::TierMissing => vec![("x-user-id", user), ("x-user-config", FLAGS)],
            Kind::ForgedRoute => with(keyed("{}", "gold"), "x-rampart-route", "canary"),
            Kind::DuplicateKeys => keyed(DUPLICATE_KEYS, "gold"),
            Kind::OversizedConfig => keyed(&payloads.config, "gold"),
            Kind::Garbled => with(keyed(FLAGS, "gold"), "x-user-config", FLAGS),
            Kind::Unkeyed => vec![
                ("x-user-config", FLAGS),
                ("x-tenant-tier", "gold"),
                ("x-rampart-route", "canary"),
            ],
            // Over HTTP/2: a matching request whose forged route header is uppercase.
            Kind::Refused => with(keyed(FLAGS, "gold"), "X-Rampart-Route", "canary"),
            Kind::TooLarge => with(keyed(FLAGS, "gold"), "x-pad", &payloads.header),
        }
    }
}

/// How a request ended.
enum Answer {
    /// A response.
    Response(Response),
    /// The connection closed before a response (HTTP/2).
    Closed,
    /// The stream reset by Envoy, with this error code (HTTP/2).
    Reset(u32),
    /// The connection ended by GOAWAY before a response, with this error code (HTTP/2).
    GoAway(u32),
    /// Anything else: an I/O error.
    Failed(String),
}

impl Answer {
    fn of_stream(reply: std::io::Result<http2::Reply>) -> Answer {
        match reply {
            Ok(reply) => Answer::Response(reply.into_response()),
            Err(err) => {
                peer_reset_code(&err).map_or(Answer::Failed(err.to_string()), Answer::Reset)
            }
        }
    }

    fn describe(&self) -> String {
        match self {
            Answer::Response(r) => format!(
                "{} {:?} seen={:?} {:?}",
                r.status,
                r.header("x-served-by"),
                r.header("x-seen-route"),
                r.header("x-rampart-decision")
            ),
            Answer::Closed => "connection closed".to_owned(),
            Answer::Reset(code) => format!("RST_STREAM {}", error_code::name(*code)),
            Answer::GoAway(code) => format!("GOAWAY {}", error_code::name(*code)),
            Answer::Failed(err) => err.clone(),
        }
    }
}

/// What the clients of one protocol sent and saw.
#[derive(Default)]
pub struct Tally {
    /// Requests that reached the filter.
    pub decided: u64,
    /// Requests Envoy's codec refused before any filter ran.
    pub refused: u64,
    /// HTTP/2 streams reset for a header list too large.
    pub too_large: u64,
    /// Connections the clients opened.
    pub connections: u64,
    /// Answers from the canary, as the clients saw them.
    pub canary: u64,
    /// Answers from stable, as the clients saw them.
    pub stable: u64,
    /// Requests sent, by class.
    pub by_class: BTreeMap<&'static str, u64>,
    /// Responses, by HTTP status.
    pub statuses: BTreeMap<u16, u64>,
    /// Answers the contract does not allow, described.
    pub unexpected: Vec<String>,
}

impl Tally {
    /// Adds `other`'s counts to these.
    pub fn merge(&mut self, other: &Tally) {
        self.decided += other.decided;
        self.refused += other.refused;
        self.too_large += other.too_large;
        self.connections += other.connections;
        self.canary += other.canary;
        self.stable += other.stable;
        for (k, v) in &other.by_class {
            *self.by_class.entry(k).or_default() += v;
        }
        for (k, v) in &other.statuses {
            *self.statuses.entry(*k).or_default() += v;
        }
        self.unexpected.extend_from_slice(&other.unexpected);
    }

    /// Requests sent.
    pub fn sent(&self) -> u64 {
        self.by_class.values().sum()
    }

    /// Counts `answer` to `pick` over `protocol`, noting it when the contract (or
    /// Envoy's codec, for the refused kinds) does not allow it.
    fn check(&mut self, pick: &Pick, protocol: Protocol, answer: Answer) {
        *self.by_class.entry(pick.kind.class()).or_default() += 1;
        if let Answer::Response(r) = &answer {
            *self.statuses.entry(r.status).or_default() += 1;
        }
        let allowed = match (pick.kind, protocol, &answer) {
            (Kind::Refused, Protocol::Http1, Answer::Response(r)) => {
                r.status == 400 && r.header("x-served-by").is_none()
            }
            (Kind::Refused, Protocol::Http2, Answer::Closed) => true,
            (Kind::TooLarge, _, Answer::Reset(code)) => *code == error_code::INTERNAL_ERROR,
            (Kind::Refused | Kind::TooLarge, _, _) => false,
            (kind, _, Answer::Response(r)) => self.decided(kind, pick.bucket, r),
            _ => false,
        };
        if !allowed {
            self.unexpected.push(format!(
                "{} {} {} (bucket {}): {}",
                protocol.name(),
                pick.kind.class(),
                pick.user,
                pick.bucket,
                answer.describe()
            ));
        } else if pick.kind == Kind::Refused {
            self.refused += 1;
        } else if pick.kind == Kind::TooLarge {
            self.too_large += 1;
        }
    }

    /// Counts the answers of the HTTP/2 requests sent on connections and threads of
    /// their own, once those ended.
    fn check_alone(&mut self, threads: Vec<JoinHandle<(Pick, Answer)>>) {
        for thread in threads {
            let (pick, answer) = thread.join().unwrap();
            self.check(&pick, Protocol::Http2, answer);
        }
    }

    /// Counts a response the filter decided; whether the contract allows it: 200,
    /// stable, or the canary for a matching request whose bucket is below the largest
    /// percent, and the route header the upstream saw names the side that answered.
    fn decided(&mut self, kind: Kind, bucket: u16, r: &Response) -> bool {
        self.decided += 1;
        let side = r.header("x-served-by").unwrap_or("none");
        match side {
            "canary" => self.canary += 1,
            "stable" => self.stable += 1,
            _ => {}
        }
        let canary_allowed = kind == Kind::Matching && bucket < PERCENTS[1] * 100;
        r.status == 200
            && (side == "stable" || (side == "canary" && canary_allowed))
            && r.header("x-seen-route") == Some(side)
    }
}

/// Sends HTTP/1.1 requests to `main` until `stop`: on a keep-alive connection, the
/// kinds only raw bytes carry each on a connection of their own.
pub fn http1(main: SocketAddr, seed: u64, stop: &AtomicBool) -> Tally {
    let mut rng = Rng(seed);
    let payloads = Payloads::new();
    let mut client = Client::new(main);
    let mut tally = Tally::default();
    while !stop.load(Ordering::Relaxed) {
        let pick = Pick::draw(&mut rng, Protocol::Http1);
        let raw: Option<&[&[u8]]> = match pick.kind {
            Kind::Garbled => Some(&[
                b"x-user-id: \xff\xfe",
                b"x-user-config: {\"a\":\"\xc3\x28\"}",
                b"x-tenant-tier: gold",
            ]),
            Kind::Refused => Some(&[b"x-user-id: a\0b", b"x-rampart-route: canary"]),
            _ => None,
        };
        let response = match raw {
            Some(lines) => {
                tally.connections += 1;
                try_get_raw(main, &raw_request("soak", lines))
            }
            None => client.try_get("/", &pick.fields(&payloads)),
        };
        let answer = response.map_or_else(|err| Answer::Failed(err.to_string()), Answer::Response);
        tally.check(&pick, Protocol::Http1, answer);
    }
    tally.connections += client.connections();
    tally
}

/// Sends HTTP/2 requests to `main` until `stop`, [`STREAMS`] at a time as concurrent
/// streams of one connection. The kind Envoy's codec refuses goes on a connection of
/// its own, waited for on a thread of its own: Envoy keeps a connection it refused
/// open for its delayed-close timeout (1 s) before closing it, and the streams go on
/// meanwhile.
pub fn http2(main: SocketAddr, seed: u64, stop: &AtomicBool) -> Tally {
    let mut rng = Rng(seed);
    let payloads = Payloads::new();
    let authority = main.to_string();
    let mut client = http2::Client::new(main);
    let mut tally = Tally::default();
    let mut closing: Vec<JoinHandle<(Pick, Answer)>> = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let (refused, streams): (Vec<Pick>, Vec<Pick>) = (0..STREAMS)
            .map(|_| Pick::draw(&mut rng, Protocol::Http2))
            .partition(|p| p.kind == Kind::Refused);
        for pick in refused {
            tally.connections += 1;
            let block = header_block(&get_fields(&authority, &pick.fields(&payloads)));
            closing.push(thread::spawn(move || {
                let answer = alone(main, &block);
                (pick, answer)
            }));
        }
        let fields: Vec<Vec<(&str, &str)>> = streams.iter().map(|p| p.fields(&payloads)).collect();
        let requests: Vec<Request> = fields.iter().map(|f| Request::get("/", f)).collect();
        for (pick, reply) in streams.iter().zip(client.send_all(&requests)) {
            tally.check(pick, Protocol::Http2, Answer::of_stream(reply));
        }
        let (closed, open) = closing.into_iter().partition(|c| c.is_finished());
        closing = open;
        tally.check_alone(closed);
    }
    tally.check_alone(closing);
    tally.connections += client.connections();
    tally
}

/// A `GET /` header block (pseudo-headers included) sent as given on an h2c connection
/// of its own: how Envoy ended the stream.
fn alone(main: SocketAddr, block: &[u8]) -> Answer {
    let outcome = RawConnection::open(main).and_then(|mut connection| {
        connection.send(&header_frames(1, block, &[], true))?;
        connection.outcome(1)
    });
    match outcome {
        Ok(Outcome::Response(r)) => Answer::Response(r),
        Ok(Outcome::Closed) => Answer::Closed,
        Ok(Outcome::Reset(code)) => Answer::Reset(code),
        Ok(Outcome::GoAway(code, _)) => Answer::GoAway(code),
        Err(err) => Answer::Failed(err.to_string()),
    }
}
