//! The ramp contract: what the operator writes (the `*Spec` types, plain serde), its
//! validation, and the compiled [`Plan`] the filter keeps for every request.
//!
//! In layers, one file each: the spec types and [`ContractError`] at the bottom, the
//! JSON field reader ([`ContractSpec::parse`]) over them, and the compilation into a
//! [`Plan`] ([`ContractSpec::compile`]) on top.

mod compile;
mod error;
mod read;
mod spec;

pub use compile::{safe_mode_route, Compare, Input, Plan, Source, MAX_INPUTS};
pub use error::{number_text, ContractError};
pub use spec::{
    ContractSpec, DriftPausePolicy, DriftPauseSpec, ExplainSpec, Format, InputSpec, LimitsSpec,
    LockSpec, OnDrift, OnMissing, RampSpec, RouteSpec, Side, SourceSpec,
};

/// The example contract and a check of one rejection, shared by the reader's and the
/// compiler's tests.
#[cfg(test)]
mod tests {
    use super::Plan;
    use serde_json::Value as J;

    pub(super) fn example() -> J {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/contract.json");
        serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
    }

    /// Applies `edit` to the example contract and returns the error, which must name `field`.
    pub(super) fn rejects(edit: impl FnOnce(&mut J), field: &str, needle: &str) {
        let mut c = example();
        edit(&mut c);
        let err = Plan::from_json(c.to_string().as_bytes()).unwrap_err();
        assert_eq!(err.field, field, "{err}");
        assert!(err.to_string().contains(needle), "{err:?} lacks {needle:?}");
    }
}
