//! One configuration's state and the per-request path, over any [`Host`].
//!
//! `configure` parses and validates the contract once; `on_request_headers` reads the
//! inputs with as few crossings as the contract allows (one header-map read for every
//! header input and the sticky key, one property read per dynamic-metadata input, node
//! properties once per VM), asks the core for a decision, counts it, records it in
//! filter state and always overwrites the route header. It decides nothing itself.

use std::borrow::Cow;
use std::cell::{Cell, OnceCell, RefCell};

use rampart::cache::DigestCache;
use rampart::contract::{number_text, safe_mode_route};
use rampart::decide::{decide_cached, Decision, Reason, Route, FILTER_STATE_KEY};
use rampart::drift_pause::{ratio_limit_text, switch_lock, DriftPause, TickOutcome, Totals};
use rampart::host::{HostError, Request};
use rampart::{Plan, Source};
use rampart_abi::LogLevel;

use crate::host::{Host, Store};
use crate::metrics::{Metrics, SafeModeMetrics, FLUSH_MS};

/// What the host does with the request after the callback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Go on with the next filter.
    Continue = 0,
    /// Stop here (a local reply was sent).
    Pause = 1,
}

/// What every request of one configuration shares.
// One value per configuration, behind an `Rc`: variant sizes do not matter.
#[allow(clippy::large_enum_variant)]
pub enum State {
    /// A valid contract.
    Active(Active),
    /// No valid contract: everything to stable.
    SafeMode(SafeMode),
}

/// A valid contract and what was derived from it once.
pub struct Active {
    plan: Plan,
    metrics: Metrics,
    /// ` contract=NAME lock=sha256:…`, appended to every summary.
    tag: String,
    /// `{"error":"config drift","contract":"NAME","reason":"`: a reject body's start.
    reject_body_start: String,
    /// Host time (ns) at configuration and at the last tick: the drift log's clock. A
    /// request never asks the host for the time (a crossing); the log's interval is
    /// whole seconds and a tick comes at least once a second.
    clock_ns: Cell<u64>,
    /// Earliest time (ns) the next drift log line may be written on this worker.
    next_log_ns: Cell<u64>,
    /// Drifted requests not logged since the last line.
    suppressed: Cell<u64>,
    /// The data-plane drift pause, when the contract has one.
    drift_pause: Option<DriftPause>,
    /// A shared-data error was logged already (once per configuration and VM).
    store_error_logged: Cell<bool>,
    /// Recent input values → field digests (bounded, flood-resistant).
    cache: RefCell<DigestCache>,
    /// The contract's property paths, serialized once; `xds.node.*` values fetched once per VM.
    properties: Properties,
}

/// Safe mode: route everything to stable.
pub struct SafeMode {
    route_header: String,
    stable_value: String,
    summary: String,
    metrics: SafeModeMetrics,
}

impl SafeMode {
    fn new(config: &[u8], metrics: SafeModeMetrics) -> SafeMode {
        let (route_header, stable_value) = safe_mode_route(config);
        let mut summary = String::from("route=stable reason=");
        summary.push_str(Reason::InvalidContract.as_str());
        SafeMode {
            route_header,
            stable_value,
            summary,
            metrics,
        }
    }
}

impl State {
    /// Before `on_configure` there is no contract: stable, like safe mode.
    pub fn unconfigured() -> State {
        State::SafeMode(SafeMode::new(b"", SafeModeMetrics::none()))
    }

    /// Reads the plugin configuration and builds the state every request shares; an
    /// invalid contract gives safe mode (loud log and metric), never a failed load:
    /// returning false from `on_configure` can poison the cached VM for later pushes.
    pub fn configure<H: Host>(host: &mut H) -> State {
        let config = host.plugin_configuration();
        match Plan::from_json(&config) {
            Ok(plan) => {
                let active = Active::new(host, plan);
                active.start_drift_pause(host);
                State::Active(active)
            }
            Err(e) => {
                host.log(
                    LogLevel::Error,
                    &format!("rampart: invalid contract, SAFE MODE (all requests to stable): {e}"),
                );
                let safe = SafeMode::new(&config, SafeModeMetrics::define(host));
                // Ticks flush the safe-mode count.
                let _ = host.set_tick_period(FLUSH_MS);
                State::SafeMode(safe)
            }
        }
    }

    /// The request path: decide, count, record, route.
    pub fn on_request_headers<H: Host>(&self, host: &mut H) -> Action {
        match self {
            State::SafeMode(safe) => {
                safe.metrics.count();
                // Whether the broken contract asked for it is unknown: recorded, so
                // access logs and the debug header show why everything went stable.
                let _ = host.set_filter_state(FILTER_STATE_KEY, safe.summary.as_bytes());
                write_route_header(host, "rampart", &safe.route_header, &safe.stable_value)
            }
            State::Active(active) => active.enforce(host),
        }
    }

    /// Periodic work: hands the pending counts to Envoy, advances the drift log's clock,
    /// merges the drift-pause counts.
    pub fn on_tick<H: Host>(&self, host: &mut H) {
        self.flush(host);
        if let State::Active(active) = self {
            let now_ns = host.now_nanos();
            active.clock_ns.set(now_ns);
            active.tick_drift_pause(host, now_ns);
        }
    }

    /// Hands the pending counts to Envoy: on every tick, and when the configuration is
    /// deleted so its last counts are not lost.
    pub fn flush<H: Host>(&self, host: &mut H) {
        match self {
            State::Active(active) => active.metrics.flush(host),
            State::SafeMode(safe) => safe.metrics.flush(host),
        }
    }

    /// The route header and its stable value, for a request whose configuration
    /// cannot be found.
    pub fn stable_route(&self) -> (&str, &str) {
        match self {
            State::Active(a) => (&a.plan.route_header, &a.plan.stable_value),
            State::SafeMode(s) => (&s.route_header, &s.stable_value),
        }
    }
}

impl Active {
    fn new<H: Host>(host: &mut H, plan: Plan) -> Active {
        let drift_pause = match &plan.drift_pause {
            Some(p) => format!(
                "ratio > {} of >= {} requests in {}s",
                ratio_limit_text(p.max_ratio),
                p.min_requests,
                p.window_seconds
            ),
            None => "off".to_owned(),
        };
        host.log(
            LogLevel::Info,
            &format!(
                "rampart[{}]: contract loaded: {} inputs, canary {}% ({} bp), on_drift {}, paused {}, lock {}, drift_pause {}",
                plan.name,
                plan.inputs.len(),
                number_text(plan.percent),
                plan.threshold,
                plan.on_drift.as_str(),
                plan.paused,
                plan.lock_id.short(12),
                drift_pause
            ),
        );
        let mut tag = format!(" contract={}", plan.name);
        if let Some(d) = plan.lock_digest {
            tag.push_str(" lock=");
            tag.push_str(&d.short(12));
        }
        Active {
            metrics: Metrics::define(host, &plan),
            drift_pause: plan
                .drift_pause
                .map(|policy| DriftPause::new(policy, &plan.name, &plan.lock_id)),
            store_error_logged: Cell::new(false),
            cache: RefCell::new(DigestCache::new(plan.inputs.len())),
            properties: Properties::new(&plan),
            reject_body_start: format!(
                "{{\"error\":\"config drift\",\"contract\":\"{}\",\"reason\":\"",
                plan.name
            ),
            tag,
            plan,
            clock_ns: Cell::new(host.now_nanos()),
            next_log_ns: Cell::new(0),
            suppressed: Cell::new(0),
        }
    }

    fn enforce<H: Host>(&self, host: &mut H) -> Action {
        let plan = &self.plan;
        let paused = self.drift_pause.as_ref().is_some_and(DriftPause::is_paused);
        let mut request = HostRequest {
            host: &mut *host,
            plan,
            properties: &self.properties,
            headers: None,
        };
        // A VM runs one callback at a time, so the borrow cannot clash; if it ever
        // did, deciding without the cache gives the same answer.
        let decision = match self.cache.try_borrow_mut() {
            Ok(mut cache) => decide_cached(plan, paused, &mut cache, &mut request),
            Err(_) => rampart::decide_with_pause(plan, paused, &mut request),
        };
        if let Some(pause) = &self.drift_pause {
            pause.record(&decision);
        }
        self.metrics.count(&decision);
        if !decision.issues.is_empty() {
            self.log_drift(host, &decision);
        }
        if plan.record_decision {
            let mut summary = String::with_capacity(96 + self.tag.len());
            decision.write_summary(plan, &mut summary);
            summary.push_str(&self.tag);
            let _ = host.set_filter_state(FILTER_STATE_KEY, summary.as_bytes());
        }
        let value = match decision.route {
            Route::Canary => &plan.canary_value,
            Route::Stable => &plan.stable_value,
            Route::Reject => return self.reject(host, &decision),
        };
        write_route_header(host, &plan.name, &plan.route_header, value)
    }

    fn reject<H: Host>(&self, host: &mut H, decision: &Decision) -> Action {
        let plan = &self.plan;
        let mut body = String::with_capacity(self.reject_body_start.len() + 64);
        body.push_str(&self.reject_body_start);
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
        // The debug header, where configured, is Envoy's: its route-level
        // `response_headers_to_add` reads the decision from filter state, and it adds
        // it to this local reply as well.
        if host
            .send_local_response(
                u32::from(plan.reject_status),
                "rampart_config_drift",
                body.as_bytes(),
                &[("content-type", "application/json")],
            )
            .is_err()
        {
            // Could not reject: stable rather than letting it through as it is.
            return write_route_header(host, &plan.name, &plan.route_header, &plan.stable_value);
        }
        Action::Pause
    }

    /// At configuration time: records this lock as the contract's current one (ending,
    /// once per Envoy, a pause tripped under the previous lock), adopts a pause still
    /// set for this contract and lock, sets the gauge and starts the ticks.
    fn start_drift_pause<H: Host>(&self, host: &mut H) {
        let name = &self.plan.name;
        match switch_lock(&mut Store(host), name, &self.plan.lock_id) {
            Ok(Some(old)) => host.log(
                LogLevel::Info,
                &format!(
                    "rampart[{name}]: drift pause cleared: lock {} replaced by {}",
                    old.short(12),
                    self.plan.lock_id.short(12)
                ),
            ),
            Ok(None) => {}
            // Without a drift pause of its own, a contract has nothing to report.
            Err(HostError) if self.drift_pause.is_none() => {}
            Err(HostError) => self.store_error(host, "recording the lock"),
        }
        let Some(pause) = &self.drift_pause else {
            self.metrics.set_drift_paused(host, false);
            // Ticks flush the counts.
            let _ = host.set_tick_period(FLUSH_MS);
            return;
        };
        let paused = match pause.start(&mut Store(host)) {
            Ok(paused) => paused,
            Err(HostError) => {
                self.store_error(host, "reading the window");
                false
            }
        };
        if paused {
            host.log(
                LogLevel::Info,
                &format!(
                    "rampart[{name}]: drift pause still in effect for lock {}; approve and re-lock to resume",
                    self.plan.lock_id.short(12)
                ),
            );
        }
        self.metrics.set_drift_paused(host, paused);
        // The drift pause's tick flushes the counts too.
        let tick = u32::try_from(pause.policy().tick_ms())
            .unwrap_or(FLUSH_MS)
            .min(FLUSH_MS);
        if host.set_tick_period(tick).is_err() {
            self.store_error(host, "starting the tick");
        }
    }

    /// Merges this worker's counts into the shared window; trips or follows the pause.
    fn tick_drift_pause<H: Host>(&self, host: &mut H, now_ns: u64) {
        let Some(pause) = &self.drift_pause else {
            return;
        };
        let now_ms = now_ns / 1_000_000;
        match pause.tick(&mut Store(host), now_ms) {
            Ok(TickOutcome::Tripped(totals)) => {
                self.metrics.set_drift_paused(host, true);
                self.log_trip(host, pause, totals);
            }
            Ok(TickOutcome::Joined) => self.metrics.set_drift_paused(host, true),
            Ok(
                TickOutcome::Idle
                | TickOutcome::Merged
                | TickOutcome::Contended
                | TickOutcome::Paused,
            ) => {}
            Err(HostError) => self.store_error(host, "merging the window"),
        }
    }

    fn log_trip<H: Host>(&self, host: &mut H, pause: &DriftPause, totals: Totals) {
        let policy = pause.policy();
        host.log(
            LogLevel::Warn,
            &format!(
                "rampart[{}]: drift pause TRIPPED for lock {}: drift ratio {} > max {} over the last {}s ({} of {} requests drifted or missing); canary paused, all requests to stable until a new lock arrives",
                self.plan.name,
                self.plan.lock_id.short(12),
                totals.ratio_text(),
                ratio_limit_text(policy.max_ratio),
                policy.window_seconds,
                totals.drifted,
                totals.requests
            ),
        );
    }

    /// Shared data failing never pauses anything; it is said once per configuration.
    fn store_error<H: Host>(&self, host: &mut H, doing: &str) {
        if !self.store_error_logged.replace(true) {
            host.log(
                LogLevel::Warn,
                &format!(
                    "rampart[{}]: drift pause: shared data unavailable ({doing}); not pausing, still serving",
                    self.plan.name
                ),
            );
        }
    }

    /// Logs drift at most once per interval per worker, with names and digests only;
    /// time is the tick's (see `clock_ns`), so a line may come up to a tick late.
    fn log_drift<H: Host>(&self, host: &mut H, decision: &Decision) {
        let interval_ns = u64::from(self.plan.log_interval_seconds) * 1_000_000_000;
        let now = if interval_ns == 0 {
            0
        } else {
            self.clock_ns.get()
        };
        if now < self.next_log_ns.get() {
            self.suppressed.set(self.suppressed.get().saturating_add(1));
            return;
        }
        self.next_log_ns.set(now.saturating_add(interval_ns));
        let suppressed = self.suppressed.replace(0);
        let mut line = format!(
            "rampart[{}]: config {} → {}{}: {}",
            self.plan.name,
            decision.reason.as_str(),
            decision.route.as_str(),
            if decision.observed {
                " (observe only)"
            } else {
                ""
            },
            decision.drift_report(&self.plan),
        );
        if suppressed > 0 {
            line.push_str(&format!(" (+{suppressed} similar requests not logged)"));
        }
        host.log(LogLevel::Warn, &line);
    }
}

/// Always overwrites the route header: a client-sent one must never survive. If the
/// host refuses, any copy is removed (the default route is stable); if even that
/// fails, the request cannot be routed safely and is answered with a local 503.
pub fn write_route_header<H: Host>(
    host: &mut H,
    contract: &str,
    header: &str,
    value: &str,
) -> Action {
    if host.set_request_header(header, value).is_ok() {
        return Action::Continue;
    }
    host.log(
        LogLevel::Error,
        &format!("rampart[{contract}]: could not set {header}; removing it"),
    );
    if host.remove_request_header(header).is_ok() {
        return Action::Continue;
    }
    host.log(
        LogLevel::Error,
        &format!("rampart[{contract}]: could not remove {header}; answering 503"),
    );
    // Should even the reply fail, the request still stops here rather than be routed.
    let _ = host.send_local_response(503, "rampart_route_header_unwritable", b"", &[]);
    Action::Pause
}

/// One request's inputs, read through the host: header inputs and the sticky key from
/// one read of the whole header map (on the first header the decision asks for) and
/// lent out of it, dynamic metadata per read, node properties from the VM's copy.
struct HostRequest<'a, H: Host> {
    host: &'a mut H,
    plan: &'a Plan,
    properties: &'a Properties,
    /// The serialized header map, once read.
    headers: Option<Result<Vec<u8>, HostError>>,
}

impl<H: Host> Request for HostRequest<'_, H> {
    type Bytes<'b>
        = Cow<'b, [u8]>
    where
        Self: 'b;

    fn read(&mut self, source: &Source) -> Result<Option<Cow<'_, [u8]>>, HostError> {
        match source {
            Source::Header { name, .. } => {
                let host = &mut *self.host;
                match self.headers.get_or_insert_with(|| host.request_headers()) {
                    Ok(map) => header_value(map, name.as_bytes()),
                    Err(e) => Err(*e),
                }
            }
            Source::Property { path } => {
                let slot = self.properties.slot(self.plan, source, path);
                self.properties.read(self.host, slot, path)
            }
        }
    }
}

/// Every value of header `name` (lowercase) in map order, joined by `,` — what Envoy's
/// `request.headers.<name>` attribute answers. A client repeating a config header must
/// not get one copy checked while the upstream reads another: the joined value drifts.
/// A header sent once is lent out of the map, not copied.
pub fn header_value<'m>(map: &'m [u8], name: &[u8]) -> Result<Option<Cow<'m, [u8]>>, HostError> {
    let mut value: Option<Cow<'m, [u8]>> = None;
    rampart_abi::each_value(map, name, |v| match &mut value {
        None => value = Some(Cow::Borrowed(v)),
        Some(joined) => {
            let joined = joined.to_mut();
            joined.push(b',');
            joined.extend_from_slice(v);
        }
    })
    .ok_or(HostError)?;
    Ok(value)
}

/// The contract's property sources in `proxy_get_property` form, and the per-VM copy
/// of its `xds.node.*` properties.
///
/// Each path is serialized once, at configuration time, not per request. Node
/// properties are set at Envoy's start and never change while it runs, so each is
/// fetched once, on the first request that needs it; dynamic metadata is read on every
/// request.
struct Properties {
    /// For every property source of the contract: its path, its wire form and whether
    /// it is a node property.
    paths: Vec<PropertyPath>,
    /// The slot in `paths` of each input's source (indexed like the plan's inputs;
    /// `None` for a header input), and of the sticky key's.
    input_slots: Vec<Option<usize>>,
    sticky_slot: Option<usize>,
}

struct PropertyPath {
    path: Vec<String>,
    wire: Vec<u8>,
    node: bool,
    /// A node property's value, once a read answered with one (an absent or failing
    /// property is asked again next time).
    value: OnceCell<Vec<u8>>,
}

impl Properties {
    fn new(plan: &Plan) -> Self {
        let mut paths: Vec<PropertyPath> = Vec::new();
        let mut slot_of = |source: &Source| {
            let Source::Property { path } = source else {
                return None;
            };
            if let Some(slot) = paths.iter().position(|p| p.path == *path) {
                return Some(slot);
            }
            paths.push(PropertyPath {
                path: path.clone(),
                wire: rampart_abi::property_path(path),
                node: is_node_property(source),
                value: OnceCell::new(),
            });
            Some(paths.len() - 1)
        };
        let input_slots = plan.inputs.iter().map(|i| slot_of(&i.source)).collect();
        let sticky_slot = slot_of(&plan.sticky);
        Self {
            paths,
            input_slots,
            sticky_slot,
        }
    }

    /// The slot of `source`. The core reads through references into the plan it was
    /// given, so identity finds it without comparing paths; comparing is the fallback
    /// should a read ever come through a copy.
    fn slot(&self, plan: &Plan, source: &Source, path: &[String]) -> Option<usize> {
        if std::ptr::eq(source, &plan.sticky) {
            return self.sticky_slot;
        }
        match plan
            .inputs
            .iter()
            .position(|input| std::ptr::eq(&input.source, source))
        {
            Some(ix) => self.input_slots.get(ix).copied().flatten(),
            None => self.paths.iter().position(|p| p.path == path),
        }
    }

    fn read<'p, H: Host>(
        &'p self,
        host: &mut H,
        slot: Option<usize>,
        path: &[String],
    ) -> Result<Option<Cow<'p, [u8]>>, HostError> {
        let Some(entry) = slot.and_then(|slot| self.paths.get(slot)) else {
            // Every property source of the plan is listed; a stranger is read as asked.
            return Ok(host
                .property(&rampart_abi::property_path(path))?
                .map(Cow::Owned));
        };
        if !entry.node {
            return Ok(host.property(&entry.wire)?.map(Cow::Owned));
        }
        if let Some(value) = entry.value.get() {
            return Ok(Some(Cow::Borrowed(value)));
        }
        // Kept for the VM's lifetime; this request is lent the kept copy too.
        Ok(host
            .property(&entry.wire)?
            .map(|value| Cow::Borrowed(entry.value.get_or_init(|| value).as_slice())))
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
