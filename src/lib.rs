//! Rampart's core: the ramp contract, RFC 8785 canonical digests, input decoding,
//! sticky bucketing and the routing decision.
//!
//! Pure: no host calls and no I/O. The Envoy filter, the CLI and the component are thin
//! adapters over this crate, so all of them compute the same digests and decisions.

#![warn(missing_docs)]

pub mod bucket;
pub mod cache;
pub mod contract;
pub mod decide;
pub mod decode;
pub mod digest;
pub mod drift_pause;
pub mod host;
pub mod jcs;
pub mod metrics;
pub mod snapshot;

pub use contract::{ContractError, ContractSpec, Plan, Side, Source};
pub use decide::{decide, decide_cached, decide_with_pause, Decision, Reason, Route};
pub use digest::Digest;
pub use host::{Request, StaticRequest};
pub use jcs::Json;
