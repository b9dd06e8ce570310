//! Rampart's Envoy HTTP filter (proxy-wasm ABI 0.2.1).
//!
//! `on_configure` parses and validates the contract once into a shared [`State`]; per
//! request the filter reads the inputs through the host, asks the core for a decision,
//! always overwrites the route header, counts, and records the decision in filter
//! state. It decides nothing itself. An invalid contract puts the filter in safe mode:
//! every request to stable, an error log and `rampart.invalid_config`, never a trap.

mod host;
mod metrics;

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, BufferType, ContextType, LogLevel};
use rampart::cache::DigestCache;
use rampart::contract::{number_text, safe_mode_route};
use rampart::decide::{decide_cached, Decision, HostError, Reason, Request, Route};
use rampart::drift_pause::{ratio_limit_text, switch_lock, DriftPause, TickOutcome, Totals};
use rampart::{Plan, Source};

use host::HostStore;

use metrics::{Metrics, SafeModeMetrics};

/// Filter state key of the decision; access logs read it as
/// `%FILTER_STATE(wasm.rampart.decision:PLAIN)%`.
const FILTER_STATE_KEY: &str = "rampart.decision";

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root::new()) });
}}

/// What every request context of one configuration shares.
// One value per configuration, behind an `Rc`: variant sizes do not matter.
#[allow(clippy::large_enum_variant)]
enum State {
    Active(Active),
    SafeMode(SafeMode),
}

/// A valid contract and what was derived from it once.
struct Active {
    plan: Plan,
    metrics: Metrics,
    /// ` contract=NAME lock=sha256:…`, appended to every summary.
    tag: String,
    /// `{"error":"config drift","contract":"NAME","reason":"`: the fixed start of a
    /// reject body.
    reject_body_start: String,
    /// Earliest time (ns) the next drift log line may be written on this worker.
    next_log_ns: Cell<u64>,
    /// Drifted requests not logged since the last line.
    suppressed: Cell<u64>,
    /// The data-plane drift pause, when the contract has one.
    drift_pause: Option<DriftPause>,
    /// A shared-data error was logged already (once per configuration and VM).
    store_error_logged: Cell<bool>,
    /// Recent input values → field digests, so repeated configs are not parsed and
    /// hashed again (bounded, flood-resistant: see `rampart::cache`).
    cache: RefCell<DigestCache>,
    /// Values of the inputs read from `xds.node.*`, fetched once per VM: the node is
    /// fixed for the life of the Envoy process, so a host call per request for them
    /// would be spent for nothing (see [`NodeValues`]).
    node_values: NodeValues,
}

/// Safe mode: route everything to stable.
struct SafeMode {
    route_header: String,
    stable_value: String,
    summary: String,
    metrics: SafeModeMetrics,
}

impl SafeMode {
    /// Safe mode for a configuration that failed validation: its route header and
    /// stable value when those are usable, else the defaults.
    fn new(config: &[u8], metrics: SafeModeMetrics) -> SafeMode {
        let (route_header, stable_value) = safe_mode_route(config);
        SafeMode {
            route_header,
            stable_value,
            summary: format!("route=stable reason={}", Reason::InvalidContract.as_str()),
            metrics,
        }
    }
}

struct Root {
    state: Rc<State>,
}

impl Root {
    /// Before `on_configure` there is no contract: stable, like safe mode. (The SDK
    /// panics if a root context cannot create a request context, so there always is one.)
    fn new() -> Root {
        Root {
            state: Rc::new(State::SafeMode(SafeMode::new(b"", SafeModeMetrics::none()))),
        }
    }
}

impl Context for Root {}

impl RootContext for Root {
    fn on_vm_start(&mut self, _vm_configuration_size: usize) -> bool {
        log::info!(
            "rampart filter {} ({}) started",
            env!("CARGO_PKG_VERSION"),
            option_env!("RAMPART_GIT_SHA").unwrap_or("unknown commit")
        );
        true
    }

    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        let config =
            proxy_wasm::hostcalls::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX)
                .ok()
                .flatten()
                .unwrap_or_default();
        let state = match Plan::from_json(&config) {
            Ok(plan) => {
                let drift_pause = match &plan.drift_pause {
                    Some(p) => format!(
                        "ratio > {} of >= {} requests in {}s",
                        ratio_limit_text(p.max_ratio),
                        p.min_requests,
                        p.window_seconds
                    ),
                    None => "off".to_owned(),
                };
                log::info!(
                    "rampart[{}]: contract loaded: {} inputs, canary {}% ({} bp), on_drift {}, paused {}, lock {}, drift_pause {}",
                    plan.name,
                    plan.inputs.len(),
                    number_text(plan.percent),
                    plan.threshold,
                    plan.on_drift.as_str(),
                    plan.paused,
                    plan.lock_id.short(12),
                    drift_pause
                );
                let mut tag = format!(" contract={}", plan.name);
                if let Some(d) = plan.lock_digest {
                    tag.push_str(" lock=");
                    tag.push_str(&d.short(12));
                }
                let drift_pause = plan
                    .drift_pause
                    .map(|policy| DriftPause::new(policy, &plan.name, &plan.lock_id));
                State::Active(Active {
                    metrics: Metrics::define(&plan),
                    drift_pause,
                    store_error_logged: Cell::new(false),
                    cache: RefCell::new(DigestCache::new(plan.inputs.len())),
                    node_values: NodeValues::new(&plan),
                    reject_body_start: format!(
                        "{{\"error\":\"config drift\",\"contract\":\"{}\",\"reason\":\"",
                        plan.name
                    ),
                    plan,
                    tag,
                    next_log_ns: Cell::new(0),
                    suppressed: Cell::new(0),
                })
            }
            Err(e) => {
                // Returning false here could poison the cached VM for later pushes;
                // safe mode keeps Envoy serving, on stable, and says why loudly.
                log::error!("rampart: invalid contract, SAFE MODE (all requests to stable): {e}");
                State::SafeMode(SafeMode::new(&config, SafeModeMetrics::define()))
            }
        };
        self.state = Rc::new(state);
        if let State::Active(active) = &*self.state {
            active.start_drift_pause();
        }
        true
    }

    fn on_tick(&mut self) {
        if let State::Active(active) = &*self.state {
            active.tick_drift_pause();
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Flow {
            state: Rc::clone(&self.state),
            response_note: None,
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

/// One HTTP request.
struct Flow {
    state: Rc<State>,
    /// Decision summary for the debug response header, when enabled.
    response_note: Option<String>,
}

impl Context for Flow {}

/// Reads request values through the host. Headers too are read as properties
/// (`request.headers.<name>`), so a repeated header arrives with all its values.
/// Reads a request's inputs through the host, node properties from the VM's copy.
struct HostRequest<'a> {
    node: &'a NodeValues,
}

impl Request for HostRequest<'_> {
    type Bytes = Vec<u8>;

    fn read(&mut self, source: &Source) -> Result<Option<Vec<u8>>, HostError> {
        self.node.read(source)
    }
}

/// The per-VM copy of the contract's `xds.node.*` properties.
///
/// Every host call costs a crossing between the wasm VM and Envoy (and a read
/// crosses twice: the host calls back into the VM to allocate the answer), which is
/// most of the filter's per-request cost. Node properties are set at Envoy's start
/// and never change while it runs, so each is fetched once, on the first request
/// that needs it; headers and dynamic metadata are read on every request.
struct NodeValues {
    /// Wire paths of the node properties, fixed at configuration time.
    paths: Vec<Vec<u8>>,
    /// The value fetched for each path; `None` until a read answered with a value
    /// (an absent or failing property is asked again next time).
    values: RefCell<Vec<Option<Vec<u8>>>>,
}

impl NodeValues {
    fn new(plan: &Plan) -> Self {
        let paths: Vec<Vec<u8>> = plan
            .inputs
            .iter()
            .map(|input| &input.source)
            .chain(std::iter::once(&plan.sticky))
            .filter(|source| is_node_property(source))
            .map(|source| source.wire().to_vec())
            .collect();
        let values = RefCell::new(vec![None; paths.len()]);
        Self { paths, values }
    }

    fn read(&self, source: &Source) -> Result<Option<Vec<u8>>, HostError> {
        let wire = source.wire();
        let Some(slot) = self.paths.iter().position(|path| path == wire) else {
            return host::property(wire);
        };
        if let Some(Some(value)) = self.values.borrow().get(slot) {
            return Ok(Some(value.clone()));
        }
        let value = host::property(wire)?;
        if let (Some(v), Ok(mut values)) = (&value, self.values.try_borrow_mut()) {
            if let Some(cell) = values.get_mut(slot) {
                *cell = Some(v.clone());
            }
        }
        Ok(value)
    }
}

/// True for `xds.node.*` properties: the node Envoy was started with.
fn is_node_property(source: &Source) -> bool {
    match source {
        Source::Property { path, .. } => {
            matches!(path.as_slice(), [xds, node, ..] if xds == "xds" && node == "node")
        }
        Source::Header { .. } => false,
    }
}

impl HttpContext for Flow {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let state = Rc::clone(&self.state);
        match &*state {
            State::SafeMode(safe) => {
                safe.metrics.count();
                let _ = host::set_filter_state(FILTER_STATE_KEY, safe.summary.as_bytes());
                write_route_header("rampart", &safe.route_header, &safe.stable_value)
            }
            State::Active(active) => self.enforce(active),
        }
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        if let (Some(note), State::Active(active)) = (&self.response_note, &*self.state) {
            if let Some(header) = &active.plan.response_header {
                let _ = host::set_response_header(header, note);
            }
        }
        Action::Continue
    }
}

impl Flow {
    fn enforce(&mut self, active: &Active) -> Action {
        let plan = &active.plan;
        let paused = active
            .drift_pause
            .as_ref()
            .is_some_and(DriftPause::is_paused);
        // A VM runs one callback at a time, so the borrow cannot clash; if it ever
        // did, deciding without the cache gives the same answer.
        let mut request = HostRequest {
            node: &active.node_values,
        };
        let decision = match active.cache.try_borrow_mut() {
            Ok(mut cache) => decide_cached(plan, paused, &mut cache, &mut request),
            Err(_) => rampart::decide_with_pause(plan, paused, &mut request),
        };
        if let Some(pause) = &active.drift_pause {
            pause.record(&decision);
        }
        active.metrics.count(&decision);
        if !decision.issues.is_empty() {
            active.log_drift(&decision);
        }
        let mut summary = String::with_capacity(96 + active.tag.len());
        decision.write_summary(plan, &mut summary);
        summary.push_str(&active.tag);
        let _ = host::set_filter_state(FILTER_STATE_KEY, summary.as_bytes());

        let value = match decision.route {
            Route::Canary => &plan.canary_value,
            Route::Stable => &plan.stable_value,
            Route::Reject => return self.reject(active, &decision, summary),
        };
        if plan.response_header.is_some() {
            self.response_note = Some(summary);
        }
        write_route_header(&plan.name, &plan.route_header, value)
    }

    fn reject(&mut self, active: &Active, decision: &Decision, summary: String) -> Action {
        let plan = &active.plan;
        let mut body = String::with_capacity(active.reject_body_start.len() + 64);
        body.push_str(&active.reject_body_start);
        body.push_str(decision.reason.as_str());
        body.push_str("\",\"fields\":[");
        for (i, name) in decision.field_names(plan).enumerate() {
            if i > 0 {
                body.push(',');
            }
            body.push('"');
            body.push_str(name);
            body.push('"');
        }
        body.push_str("]}\n");
        let mut headers = vec![("content-type", "application/json")];
        if let Some(h) = &plan.response_header {
            headers.push((h.as_str(), summary.as_str()));
        }
        let wire = host::serialize_headers(&headers);
        if host::send_local_response(
            u32::from(plan.reject_status),
            "rampart_config_drift",
            &wire,
            body.as_bytes(),
        )
        .is_err()
        {
            // Could not reject: fall back to stable rather than letting it through as is.
            return write_route_header(&plan.name, &plan.route_header, &plan.stable_value);
        }
        if plan.response_header.is_some() {
            self.response_note = Some(summary);
        }
        Action::Pause
    }
}

/// Always overwrites the route header: a client-sent one must never survive. If the
/// host refuses, any copy is removed (the default route is stable); if even that fails,
/// the request cannot be routed safely and is answered with a local 503.
fn write_route_header(contract: &str, header: &str, value: &str) -> Action {
    if host::set_request_header(header, value).is_ok() {
        return Action::Continue;
    }
    log::error!("rampart[{contract}]: could not set {header}; removing it");
    if host::remove_request_header(header).is_ok() {
        return Action::Continue;
    }
    log::error!("rampart[{contract}]: could not remove {header}; answering 503");
    let wire = host::serialize_headers(&[]);
    // Should even the reply fail, the request still stops here rather than be routed.
    let _ = host::send_local_response(503, "rampart_route_header_unwritable", &wire, b"");
    Action::Pause
}

impl Active {
    /// At configuration time: records this lock as the contract's current one (ending,
    /// once per Envoy, a pause tripped under the previous lock), adopts a pause still
    /// set for this contract and lock, sets the gauge and starts the ticks.
    fn start_drift_pause(&self) {
        let name = &self.plan.name;
        match switch_lock(&mut HostStore, name, &self.plan.lock_id) {
            Ok(Some(old)) => log::info!(
                "rampart[{name}]: drift pause cleared: lock {} replaced by {}",
                old.short(12),
                self.plan.lock_id.short(12)
            ),
            Ok(None) => {}
            // Without a drift pause of its own, a contract has nothing to report.
            Err(HostError) if self.drift_pause.is_none() => {}
            Err(HostError) => self.store_error("recording the lock"),
        }
        let Some(pause) = &self.drift_pause else {
            self.metrics.set_drift_paused(false);
            let _ = host::set_tick_period(0);
            return;
        };
        let paused = match pause.start(&mut HostStore) {
            Ok(paused) => paused,
            Err(HostError) => {
                self.store_error("reading the window");
                false
            }
        };
        if paused {
            log::info!(
                "rampart[{name}]: drift pause still in effect for lock {}; approve and re-lock to resume",
                self.plan.lock_id.short(12)
            );
        }
        self.metrics.set_drift_paused(paused);
        let tick = u32::try_from(pause.policy().tick_ms()).unwrap_or(1000);
        if host::set_tick_period(tick).is_err() {
            self.store_error("starting the tick");
        }
    }

    /// Merges this worker's counts into the shared window; trips or follows the pause.
    fn tick_drift_pause(&self) {
        let Some(pause) = &self.drift_pause else {
            return;
        };
        let now_ms = host::now_nanos() / 1_000_000;
        match pause.tick(&mut HostStore, now_ms) {
            Ok(TickOutcome::Tripped(totals)) => {
                self.metrics.set_drift_paused(true);
                self.log_trip(pause, totals);
            }
            Ok(TickOutcome::Joined) => self.metrics.set_drift_paused(true),
            Ok(
                TickOutcome::Idle
                | TickOutcome::Merged
                | TickOutcome::Contended
                | TickOutcome::Paused,
            ) => {}
            Err(HostError) => self.store_error("merging the window"),
        }
    }

    fn log_trip(&self, pause: &DriftPause, totals: Totals) {
        let policy = pause.policy();
        log::warn!(
            "rampart[{}]: drift pause TRIPPED for lock {}: drift ratio {} > max {} over the last {}s ({} of {} requests drifted or missing); canary paused, all requests to stable until a new lock arrives",
            self.plan.name,
            self.plan.lock_id.short(12),
            totals.ratio_text(),
            ratio_limit_text(policy.max_ratio),
            policy.window_seconds,
            totals.drifted,
            totals.requests
        );
    }

    /// Shared data failing never pauses anything; it is said once per configuration.
    fn store_error(&self, doing: &str) {
        if !self.store_error_logged.replace(true) {
            log::warn!(
                "rampart[{}]: drift pause: shared data unavailable ({doing}); not pausing, still serving",
                self.plan.name
            );
        }
    }

    /// Logs drift at most once per interval per worker, with names and digests only.
    fn log_drift(&self, decision: &Decision) {
        let interval_ns = u64::from(self.plan.log_interval_seconds) * 1_000_000_000;
        let now = if interval_ns == 0 {
            0
        } else {
            host::now_nanos()
        };
        if now < self.next_log_ns.get() {
            self.suppressed.set(self.suppressed.get().saturating_add(1));
            return;
        }
        self.next_log_ns.set(now.saturating_add(interval_ns));
        let suppressed = self.suppressed.replace(0);
        log::warn!(
            "rampart[{}]: config {} → {}{}: {}{}",
            self.plan.name,
            decision.reason.as_str(),
            decision.route.as_str(),
            if decision.observed {
                " (observe only)"
            } else {
                ""
            },
            decision.drift_report(&self.plan),
            if suppressed > 0 {
                format!(" (+{suppressed} similar requests not logged)")
            } else {
                String::new()
            }
        );
    }
}
