//! Rampart's engine as a WebAssembly component exporting the `rampart:core/engine`
//! interface (`wit/rampart.wit`).
//!
//! Glue only: every answer comes from the `rampart` core, which the Envoy filter and
//! the CLI use too, so a component host gets the same digests and decisions. This
//! crate converts between WIT types and core types and decides nothing itself.

use rampart::host::{HostError, Request};
use rampart::jcs::{Json, JsonError, DEFAULT_MAX_DEPTH};
use rampart::snapshot::digest_of;
use rampart::{ContractError, Plan, Source};

wit_bindgen::generate!({
    world: "rampart",
    path: "../../wit",
});

use exports::rampart::core::engine as wit;

/// The component: the exported functions of `rampart:core/engine`.
struct Engine;

export!(Engine);

impl wit::Guest for Engine {
    type Contract = LoadedContract;

    fn digest(json: String) -> Result<String, wit::JsonError> {
        Ok(digest_of(&parse_json(&json)?).to_string())
    }

    fn canonical_json(json: String) -> Result<String, wit::JsonError> {
        String::from_utf8(parse_json(&json)?.to_canonical())
            .map_err(|e| wit::JsonError::Invalid(e.to_string()))
    }
}

/// Parses with the CLI's depth limit, so `digest` equals `rampart digest`.
fn parse_json(text: &str) -> Result<Json, wit::JsonError> {
    Json::parse(text.as_bytes(), DEFAULT_MAX_DEPTH).map_err(|e| match e {
        JsonError::TooDeep { limit } => {
            wit::JsonError::TooDeep(u32::try_from(limit).unwrap_or(u32::MAX))
        }
        JsonError::Invalid(message) => wit::JsonError::Invalid(message),
    })
}

/// The `contract` resource: a compiled plan, shared read-only by every decision.
pub struct LoadedContract {
    plan: Plan,
}

impl wit::GuestContract for LoadedContract {
    fn load(json: String) -> Result<wit::Contract, wit::ContractError> {
        let plan = Plan::from_json(json.as_bytes()).map_err(contract_error)?;
        Ok(wit::Contract::new(LoadedContract { plan }))
    }

    fn name(&self) -> String {
        self.plan.name.clone()
    }

    fn percent(&self) -> f64 {
        self.plan.percent
    }

    fn inputs(&self) -> Vec<wit::Input> {
        self.plan
            .inputs
            .iter()
            .map(|input| wit::Input {
                name: input.name.clone(),
                source: source(&input.source),
                format: format(input.format),
            })
            .collect()
    }

    fn sticky(&self) -> wit::Source {
        source(&self.plan.sticky)
    }

    fn decide(
        &self,
        inputs: Vec<wit::Observed>,
        sticky_key: Option<wit::Value>,
    ) -> Result<wit::Decision, wit::DecideError> {
        let plan = &self.plan;
        let mut values: Vec<Option<Vec<u8>>> = vec![None; plan.inputs.len()];
        for observed in inputs {
            let ix = plan
                .inputs
                .iter()
                .position(|input| input.name == observed.name)
                .ok_or_else(|| wit::DecideError::UnknownInput(observed.name.clone()))?;
            if values[ix].is_some() {
                return Err(wit::DecideError::RepeatedInput(observed.name));
            }
            values[ix] = Some(bytes(observed.value));
        }
        let mut request = Observed {
            plan,
            values,
            sticky_key: sticky_key.map(bytes),
        };
        let d = rampart::decide(plan, &mut request);
        Ok(wit::Decision {
            side: match d.route {
                rampart::Route::Canary => wit::Side::Canary,
                rampart::Route::Stable => wit::Side::Stable,
                rampart::Route::Reject => wit::Side::Reject,
            },
            reason: match d.reason {
                rampart::Reason::Match => wit::Reason::Match,
                rampart::Reason::Drift => wit::Reason::Drift,
                rampart::Reason::Missing => wit::Reason::Missing,
                rampart::Reason::Paused => wit::Reason::Paused,
                rampart::Reason::DriftPaused => wit::Reason::DriftPaused,
                rampart::Reason::Unkeyed => wit::Reason::Unkeyed,
                rampart::Reason::InvalidContract => wit::Reason::InvalidContract,
            },
            fields: d.field_names(plan).map(str::to_owned).collect(),
            bucket: d.bucket,
            observed: d.observed,
            summary: d.summary(plan),
            drift_report: d.drift_report(plan),
        })
    }
}

/// One request's observed values, answering the core's reads by input.
struct Observed<'p> {
    plan: &'p Plan,
    /// Indexed like `plan.inputs`; `None` is a missing input.
    values: Vec<Option<Vec<u8>>>,
    sticky_key: Option<Vec<u8>>,
}

impl Request for Observed<'_> {
    type Bytes<'a>
        = Vec<u8>
    where
        Self: 'a;

    fn read(&mut self, source: &Source) -> Result<Option<Vec<u8>>, HostError> {
        // The core reads through references into the plan it was given. Identity tells
        // the sticky key from an input that names the same header; equality is the
        // fallback should a read ever come through a copy of the source.
        let input = |same: &dyn Fn(&Source, &Source) -> bool| {
            self.plan
                .inputs
                .iter()
                .position(|input| same(&input.source, source))
        };
        let value = if std::ptr::eq(source, &self.plan.sticky) {
            self.sticky_key.clone()
        } else if let Some(ix) = input(&|a, b| std::ptr::eq(a, b)).or_else(|| input(&|a, b| a == b))
        {
            self.values.get(ix).cloned().flatten()
        } else if *source == self.plan.sticky {
            self.sticky_key.clone()
        } else {
            None
        };
        Ok(value)
    }
}

fn bytes(value: wit::Value) -> Vec<u8> {
    match value {
        wit::Value::Text(text) => text.into_bytes(),
        wit::Value::Bytes(bytes) => bytes,
    }
}

fn contract_error(e: ContractError) -> wit::ContractError {
    if e.field.is_empty() {
        wit::ContractError::Document(e.message)
    } else {
        wit::ContractError::Field(wit::FieldError {
            field: e.field,
            message: e.message,
        })
    }
}

fn source(source: &Source) -> wit::Source {
    match source {
        Source::Header { name, .. } => wit::Source::Header(name.clone()),
        Source::Property { path, .. } => wit::Source::Property(path.clone()),
    }
}

fn format(format: rampart::contract::Format) -> wit::Format {
    use rampart::contract::Format;
    match format {
        Format::String => wit::Format::String,
        Format::Json => wit::Format::Json,
        Format::Int => wit::Format::Int,
        Format::Double => wit::Format::Double,
        Format::Bool => wit::Format::Bool,
        Format::Digest => wit::Format::Digest,
    }
}
