//! HTTP/2 against Envoy over h2c (prior knowledge; the harness's listeners take HTTP/1.1
//! and HTTP/2 on one port): [`Client`], a conforming client on the `h2` crate, and
//! [`raw`], frames written byte by byte for what a conforming client never sends.

pub mod client;
pub mod frame;
pub mod raw;

pub use client::{peer_reset_code, reset_code, Client, Reply, Request};
