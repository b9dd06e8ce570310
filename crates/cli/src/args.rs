//! The command line: every command, its options and their help, declared once with
//! clap's derive. Parsing errors exit 2, as every usage error of `rampart` does.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Printed after the top-level help: what the exit code says.
const EXIT_CODES: &str = "\
Exit codes: 0 ok; 1 invalid input, gate blocked, config delta, audit check failed (the
message names the field or record); 2 usage, I/O or network error; 3 not allowed in the
ramp's current status; 4 a gate is waiting (bake time, min requests): retry later.";

/// `rampart`: config-locked canary ramps.
#[derive(Debug, Parser)]
#[command(
    name = "rampart",
    version,
    about = "rampart: config-locked canary ramps",
    after_help = EXIT_CODES
)]
pub struct Cli {
    /// The command; without one, the help is printed.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// The top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// sha256 of the RFC 8785 canonical form of a JSON file's content.
    Digest(DigestArgs),
    /// Validate a contract; with --snapshot, also check that its lock is that snapshot's lock.
    Check(CheckArgs),
    /// The contract with lock.digest and lock.fields computed from a snapshot ({input: value}).
    Lock(LockArgs),
    /// Each key's sticky bucket (0..10000) and side.
    Bucket(BucketArgs),
    /// Deployable config with exact-match routing: route header = canary value -> canary,
    /// everything else -> stable.
    Render(RenderArgs),
    /// The filter module as an OCI image layout (Wasm image "compat" variant) that
    /// Istio and Envoy Gateway pull; prints the manifest digest.
    Package(PackageArgs),
    /// Drive a plan of steps through the gates (live config has the locked digest;
    /// drift ratio and request count since the step began; bake time).
    #[command(subcommand)]
    Ramp(RampCommand),
    /// Check or list the ramp's hash-chained audit log.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Print the version.
    Version,
}

/// `rampart digest`.
#[derive(Debug, Args)]
pub struct DigestArgs {
    /// The JSON file; `-` reads standard input.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// Print the canonical JSON instead of its digest.
    #[arg(long)]
    pub canonical: bool,
}

/// `rampart check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The contract file; `-` reads standard input.
    #[arg(value_name = "CONTRACT")]
    pub contract: PathBuf,
    /// A config snapshot ({input: value}) whose lock the contract must carry.
    #[arg(long, value_name = "FILE")]
    pub snapshot: Option<PathBuf>,
}

/// `rampart lock`.
#[derive(Debug, Args)]
pub struct LockArgs {
    /// The contract to lock.
    #[arg(long, value_name = "FILE")]
    pub contract: PathBuf,
    /// The tested config snapshot ({input: value}).
    #[arg(long, value_name = "FILE")]
    pub snapshot: PathBuf,
    /// Write the locked contract here (atomically) instead of printing it.
    #[arg(long, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

/// `rampart bucket`.
#[derive(Debug, Args)]
pub struct BucketArgs {
    /// The contract whose name salts the buckets and whose percent sets the threshold.
    #[arg(long, value_name = "FILE")]
    pub contract: PathBuf,
    /// One JSON object per key.
    #[arg(long)]
    pub json: bool,
    /// The sticky keys (user ids).
    #[arg(value_name = "KEY", required = true)]
    pub keys: Vec<String>,
}

/// `rampart package`.
#[derive(Debug, Args)]
#[command(
    after_help = "Push it with e.g. `skopeo copy oci:DIR:TAG docker://REGISTRY/REPO:TAG`; \
the digest printed is the one `rampart render istio --sha256` pins."
)]
pub struct PackageArgs {
    /// The filter module (`cargo xtask wasm` builds target/rampart.wasm).
    #[arg(long, value_name = "FILE")]
    pub wasm: PathBuf,
    /// The directory of the OCI image layout (created if missing; index.json lists
    /// this image only).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// The tag the layout names the image by (`oci:DIR:TAG`).
    #[arg(long, value_name = "TAG", default_value = env!("CARGO_PKG_VERSION"))]
    pub tag: String,
}

/// `rampart render`.
#[derive(Debug, Args)]
#[command(after_help = "`rampart render TARGET --help` lists the target's options and defaults.")]
pub struct RenderArgs {
    /// What to render for.
    #[command(subcommand)]
    pub target: RenderTarget,
}

/// The deployment targets of `rampart render`, each with its own options.
#[derive(Debug, Subcommand)]
pub enum RenderTarget {
    /// An Envoy bootstrap taking the filter by ECDS from a watched file, and that file.
    ///
    /// Writes DIR/envoy.yaml and DIR/rampart.ecds.json (the first resource; the ramp
    /// commands replace it to publish each step).
    Envoy(EnvoyArgs),
    /// The ECDS resource alone.
    ///
    /// Printed, or written to DIR/rampart.ecds.json with --out-dir.
    Ecds(EcdsArgs),
    /// An Istio WasmPlugin (the contract as pluginConfig), VirtualService and DestinationRule.
    ///
    /// Printed, or written to DIR/wasmplugin.yaml and DIR/routing.yaml with --out-dir.
    Istio(IstioArgs),
    /// An Envoy Gateway EnvoyExtensionPolicy (the contract as config) and an HTTPRoute.
    ///
    /// Printed, or written to DIR/envoyextensionpolicy.yaml and DIR/httproute.yaml with
    /// --out-dir.
    EnvoyGateway(GatewayArgs),
    /// An Argo Rollouts AnalysisTemplate gating on the drift ratio and the drift pause.
    ///
    /// Printed, or written to DIR/analysistemplate.yaml with --out-dir.
    ArgoRollouts(ArgoArgs),
    /// Flagger MetricTemplates (drift ratio, drift pause) and the Canary's analysis.
    ///
    /// Printed, or written to DIR/metrictemplates.yaml and DIR/canary-analysis.yaml (a
    /// merge patch for the Canary) with --out-dir.
    Flagger(FlaggerArgs),
    /// A Grafana dashboard of every contract's routes, drift, drift pause and safe mode.
    ///
    /// Printed, or written to DIR/rampart.json with --out-dir. Needs no contract: a
    /// `$contract` variable lists the contracts Prometheus has seen.
    Grafana(GrafanaArgs),
}

impl RenderTarget {
    /// The target's name on the command line.
    pub fn name(&self) -> &'static str {
        match self {
            RenderTarget::Envoy(_) => "envoy",
            RenderTarget::Ecds(_) => "ecds",
            RenderTarget::Istio(_) => "istio",
            RenderTarget::EnvoyGateway(_) => "envoy-gateway",
            RenderTarget::ArgoRollouts(_) => "argo-rollouts",
            RenderTarget::Flagger(_) => "flagger",
            RenderTarget::Grafana(_) => "grafana",
        }
    }
}

/// Where the contract to render comes from: a contract file or a ramp plan's contract.
#[derive(Debug, Clone, Args)]
#[group(required = true, multiple = false)]
pub struct ContractSource {
    /// The contract file.
    #[arg(long, value_name = "FILE")]
    pub contract: Option<PathBuf>,
    /// A ramp plan; renders the contract file it names.
    #[arg(long, value_name = "FILE")]
    pub plan: Option<PathBuf>,
}

/// Default `--filter-name`: the ECDS resource and plugin name.
pub const DEFAULT_FILTER_NAME: &str = "rampart";
/// Default `--wasm` of the Envoy targets: where a rendered bootstrap expects the module.
pub const DEFAULT_WASM_PATH: &str = "/etc/envoy/rampart/rampart.wasm";
/// Default `--wasm` of the Kubernetes targets.
pub const DEFAULT_IMAGE: &str = "oci://registry.example.com/rampart/filter:0.1.0";
/// Default `--ecds-path`.
pub const DEFAULT_ECDS_PATH: &str = "/etc/envoy/rampart/rampart.ecds.json";
/// Default `--listen`.
pub const DEFAULT_LISTEN: &str = "0.0.0.0:10000";
/// Default `--admin`.
pub const DEFAULT_ADMIN: &str = "127.0.0.1:9901";
/// Default `--canary` (upstream).
pub const DEFAULT_CANARY: &str = "127.0.0.1:8081";
/// Default `--stable` (upstream).
pub const DEFAULT_STABLE: &str = "127.0.0.1:8080";
/// Default `--node`.
pub const DEFAULT_NODE: &str = "rampart";
/// Default `--namespace`.
pub const DEFAULT_NAMESPACE: &str = "default";
/// Default `--selector`.
pub const DEFAULT_SELECTOR: &str = "app=frontend";
/// Default `--host`.
pub const DEFAULT_HOST: &str = "checkout";
/// Default `--version-label`.
pub const DEFAULT_VERSION_LABEL: &str = "version";
/// Default `--priority`.
pub const DEFAULT_PRIORITY: i32 = 10;
/// Default `--gateway`.
pub const DEFAULT_GATEWAY: &str = "eg";
/// Default `--route`.
pub const DEFAULT_ROUTE: &str = "checkout";
/// Default `--canary-service`.
pub const DEFAULT_CANARY_SERVICE: &str = "checkout-canary";
/// Default `--stable-service`.
pub const DEFAULT_STABLE_SERVICE: &str = "checkout-stable";
/// Default `--port`.
pub const DEFAULT_PORT: u16 = 8080;

/// `rampart render envoy`.
#[derive(Debug, Args)]
pub struct EnvoyArgs {
    /// The contract to render.
    #[command(flatten)]
    pub source: ContractSource,
    /// Where to write envoy.yaml and rampart.ecds.json (two files, so a directory is needed).
    #[arg(long, value_name = "DIR")]
    pub out_dir: PathBuf,
    /// The listener.
    #[arg(long, value_name = "ADDR:PORT", default_value = DEFAULT_LISTEN)]
    pub listen: HostPort,
    /// The admin endpoint.
    #[arg(long, value_name = "ADDR:PORT", default_value = DEFAULT_ADMIN)]
    pub admin: HostPort,
    /// The canary upstream.
    #[arg(long, value_name = "ADDR:PORT", default_value = DEFAULT_CANARY)]
    pub canary: HostPort,
    /// The stable upstream.
    #[arg(long, value_name = "ADDR:PORT", default_value = DEFAULT_STABLE)]
    pub stable: HostPort,
    /// The watched ECDS file as Envoy sees it.
    #[arg(long, value_name = "PATH", default_value = DEFAULT_ECDS_PATH)]
    pub ecds_path: PathBuf,
    /// The filter module as Envoy sees it.
    #[arg(long, value_name = "PATH", default_value = DEFAULT_WASM_PATH)]
    pub wasm: String,
    /// Node id and cluster (xDS sources, ECDS from a file included, need them).
    #[arg(long, value_name = "NAME", default_value = DEFAULT_NODE)]
    pub node: String,
    /// The ECDS resource name.
    #[arg(long, value_name = "NAME", default_value = DEFAULT_FILTER_NAME)]
    pub filter_name: String,
}

/// `rampart render ecds`.
#[derive(Debug, Args)]
pub struct EcdsArgs {
    /// The contract to render.
    #[command(flatten)]
    pub source: ContractSource,
    /// Write DIR/rampart.ecds.json instead of printing it.
    #[arg(long, value_name = "DIR")]
    pub out_dir: Option<PathBuf>,
    /// The filter module as Envoy sees it.
    #[arg(long, value_name = "PATH", default_value = DEFAULT_WASM_PATH)]
    pub wasm: String,
    /// The ECDS resource name.
    #[arg(long, value_name = "NAME", default_value = DEFAULT_FILTER_NAME)]
    pub filter_name: String,
}

/// What every Kubernetes target takes: the contract, the output, the namespace.
#[derive(Debug, Args)]
pub struct ManifestArgs {
    /// The contract to render.
    #[command(flatten)]
    pub source: ContractSource,
    /// Write the files here instead of printing them.
    #[arg(long, value_name = "DIR")]
    pub out_dir: Option<PathBuf>,
    /// The namespace of every resource.
    #[arg(long, value_name = "NS", default_value = DEFAULT_NAMESPACE)]
    pub namespace: String,
}

/// `rampart render istio`.
#[derive(Debug, Args)]
pub struct IstioArgs {
    /// The contract, where to write, the namespace.
    #[command(flatten)]
    pub manifests: ManifestArgs,
    /// The workload whose proxy routes to the service (its sidecar or the ingress gateway).
    #[arg(long, value_name = "KEY=VALUE", default_value = DEFAULT_SELECTOR)]
    pub selector: Label,
    /// The service the ramp splits.
    #[arg(long, value_name = "NAME", default_value = DEFAULT_HOST)]
    pub host: String,
    /// The pod label telling canary from stable.
    #[arg(long, value_name = "KEY", default_value = DEFAULT_VERSION_LABEL)]
    pub version_label: String,
    /// The filter's phase; AUTHZ runs after authentication filled the metadata.
    #[arg(long, value_enum, default_value_t = Phase::Authz)]
    pub phase: Phase,
    /// The plugin's priority within its phase.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_PRIORITY, allow_negative_numbers = true)]
    pub priority: i32,
    /// The module: oci://, https:// or file://.
    #[arg(long, value_name = "URL", default_value = DEFAULT_IMAGE)]
    pub wasm: String,
    /// The plugin name.
    #[arg(long, value_name = "NAME", default_value = DEFAULT_FILTER_NAME)]
    pub filter_name: String,
    /// Pins the module's digest.
    #[command(flatten)]
    pub pin: ImagePin,
}

/// `--sha256` / `--image-layout` of the Kubernetes targets: the `sha256` the proxy
/// checks the pulled module against.
#[derive(Debug, Args)]
pub struct ImagePin {
    /// Pin `sha256`: for an oci:// image the manifest's digest (what `rampart package`
    /// prints), for an https:// module its own; with or without `sha256:`.
    #[arg(long, value_name = "HEX", conflicts_with = "image_layout")]
    pub sha256: Option<String>,
    /// Pin `sha256` to the manifest digest of the image that `rampart package` wrote to
    /// DIR, under the --wasm image's tag.
    #[arg(long, value_name = "DIR")]
    pub image_layout: Option<PathBuf>,
}

/// The phase of an Istio `WasmPlugin`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Phase {
    /// Before Istio's authentication filters.
    #[value(name = "AUTHN")]
    Authn,
    /// After authentication, before authorization.
    #[value(name = "AUTHZ")]
    Authz,
    /// With the stats filters.
    #[value(name = "STATS")]
    Stats,
}

impl Phase {
    /// The name Istio uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Authn => "AUTHN",
            Phase::Authz => "AUTHZ",
            Phase::Stats => "STATS",
        }
    }
}

/// `rampart render envoy-gateway`.
#[derive(Debug, Args)]
pub struct GatewayArgs {
    /// The contract, where to write, the namespace.
    #[command(flatten)]
    pub manifests: ManifestArgs,
    /// The parent Gateway.
    #[arg(long, value_name = "NAME", default_value = DEFAULT_GATEWAY)]
    pub gateway: String,
    /// The HTTPRoute's name.
    #[arg(long, value_name = "NAME", default_value = DEFAULT_ROUTE)]
    pub route: String,
    /// The canary's Service.
    #[arg(long, value_name = "NAME", default_value = DEFAULT_CANARY_SERVICE)]
    pub canary_service: String,
    /// The stable Service.
    #[arg(long, value_name = "NAME", default_value = DEFAULT_STABLE_SERVICE)]
    pub stable_service: String,
    /// The backends' port.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_PORT)]
    pub port: u16,
    /// The module's OCI image.
    #[arg(long, value_name = "URL", default_value = DEFAULT_IMAGE)]
    pub wasm: String,
    /// The wasm extension's name.
    #[arg(long, value_name = "NAME", default_value = DEFAULT_FILTER_NAME)]
    pub filter_name: String,
    /// Pins the image's digest.
    #[command(flatten)]
    pub pin: ImagePin,
}

/// Default `--prometheus`: the Prometheus the analysis controller queries.
pub const DEFAULT_PROMETHEUS: &str = "http://prometheus.monitoring.svc:9090";
/// Default `--max-drift-ratio` with `--contract` (with `--plan`, the plan's
/// `gates.max_drift_ratio`): the example plan's limit.
pub const DEFAULT_MAX_DRIFT_RATIO: f64 = 0.01;
/// Default `--window`.
pub const DEFAULT_WINDOW: &str = "5m";
/// Default `--interval`.
pub const DEFAULT_INTERVAL: &str = "1m";
/// Default `--failure-limit` (Argo Rollouts): the first failed measurement fails the analysis.
pub const DEFAULT_FAILURE_LIMIT: u32 = 0;
/// Default `--threshold` (Flagger): the first failed check rolls back.
pub const DEFAULT_THRESHOLD: u32 = 1;
/// Default `--iterations` (Flagger A/B checks before promotion).
pub const DEFAULT_ITERATIONS: u32 = 10;

/// What both analysis targets (Argo Rollouts, Flagger) take.
#[derive(Debug, Args)]
pub struct AnalysisArgs {
    /// The contract to gate on, where to write, the namespace.
    #[command(flatten)]
    pub manifests: ManifestArgs,
    /// The Prometheus that scrapes the Envoys running the filter.
    #[arg(long, value_name = "URL", default_value = DEFAULT_PROMETHEUS, value_parser = http_url)]
    pub prometheus: String,
    /// Highest (drift + missing) / requests over the window [default: the plan's
    /// gates.max_drift_ratio with --plan, else 0.01].
    #[arg(long, value_name = "RATIO", value_parser = ratio)]
    pub max_drift_ratio: Option<f64>,
    /// The window the ratio is taken over (a PromQL duration).
    #[arg(long, value_name = "DURATION", default_value = DEFAULT_WINDOW)]
    pub window: Duration,
    /// How often the controller queries.
    #[arg(long, value_name = "DURATION", default_value = DEFAULT_INTERVAL, value_parser = interval)]
    pub interval: Duration,
}

/// `rampart render argo-rollouts`.
#[derive(Debug, Args)]
pub struct ArgoArgs {
    /// What both analysis targets take.
    #[command(flatten)]
    pub analysis: AnalysisArgs,
    /// Failed measurements tolerated before the analysis fails (the rollout aborts).
    #[arg(long, value_name = "N", default_value_t = DEFAULT_FAILURE_LIMIT)]
    pub failure_limit: u32,
}

/// `rampart render flagger`.
#[derive(Debug, Args)]
pub struct FlaggerArgs {
    /// What both analysis targets take.
    #[command(flatten)]
    pub analysis: AnalysisArgs,
    /// Failed checks before Flagger rolls back.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_THRESHOLD, value_parser = clap::value_parser!(u32).range(1..))]
    pub threshold: u32,
    /// A/B checks (one per interval) before promotion.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_ITERATIONS, value_parser = clap::value_parser!(u32).range(1..))]
    pub iterations: u32,
}

/// Default `--datasource` (Grafana): the input Grafana asks for on import.
pub const DEFAULT_DATASOURCE: &str = "${DS_PROMETHEUS}";

/// `rampart render grafana`.
#[derive(Debug, Args)]
pub struct GrafanaArgs {
    /// Write DIR/rampart.json instead of printing it.
    #[arg(long, value_name = "DIR")]
    pub out_dir: Option<PathBuf>,
    /// The uid of the Prometheus data source that scrapes the Envoys (the default is an
    /// input Grafana asks for when the dashboard is imported).
    #[arg(long, value_name = "UID", default_value = DEFAULT_DATASOURCE)]
    pub datasource: String,
    /// The drift-ratio limit drawn as the threshold line, as the analyses gate on it.
    #[arg(long, value_name = "RATIO", default_value_t = DEFAULT_MAX_DRIFT_RATIO, value_parser = ratio)]
    pub max_drift_ratio: f64,
    /// The window the drift ratio is taken over (a PromQL duration), as the analyses take it.
    #[arg(long, value_name = "DURATION", default_value = DEFAULT_WINDOW)]
    pub window: Duration,
}

/// A duration as Prometheus and the controllers write it: digits and one unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Duration(String);

impl Duration {
    /// The text, e.g. `5m`.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for Duration {
    type Err = String;

    fn from_str(text: &str) -> Result<Duration, String> {
        let digits = text.trim_end_matches(|c: char| c.is_ascii_alphabetic());
        let unit = &text[digits.len()..];
        let valid = !digits.is_empty()
            && digits.bytes().all(|b| b.is_ascii_digit())
            && digits.bytes().any(|b| b != b'0')
            && matches!(unit, "s" | "m" | "h" | "d");
        if valid {
            Ok(Duration(text.to_owned()))
        } else {
            Err(format!(
                "expected a duration like 30s, 5m, 1h or 1d, got `{text}`"
            ))
        }
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A query interval: seconds or minutes (Flagger's schema takes no other unit).
fn interval(text: &str) -> Result<Duration, String> {
    let duration: Duration = text.parse()?;
    if duration.0.ends_with('s') || duration.0.ends_with('m') {
        Ok(duration)
    } else {
        Err(format!(
            "expected seconds or minutes (30s, 1m), got `{text}`"
        ))
    }
}

/// A drift-ratio limit, 0 to 1 (as the plan's `gates.max_drift_ratio`).
pub fn ratio(text: &str) -> Result<f64, String> {
    text.parse::<f64>()
        .ok()
        .filter(|r| (0.0..=1.0).contains(r))
        .ok_or_else(|| format!("expected a number from 0 to 1, got `{text}`"))
}

fn http_url(text: &str) -> Result<String, String> {
    let rest = text
        .strip_prefix("http://")
        .or_else(|| text.strip_prefix("https://"));
    match rest {
        Some(host) if !host.is_empty() && !text.contains(char::is_whitespace) => {
            Ok(text.to_owned())
        }
        _ => Err(format!("expected an http:// or https:// URL, got `{text}`")),
    }
}

/// `ADDR:PORT`: an Envoy socket address (the address is kept as written).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPort {
    /// The address.
    pub host: String,
    /// The port.
    pub port: u16,
}

impl FromStr for HostPort {
    type Err = String;

    fn from_str(text: &str) -> Result<HostPort, String> {
        let Some((host, port)) = text.rsplit_once(':') else {
            return Err(format!("expected ADDR:PORT, got `{text}`"));
        };
        let port = port
            .parse()
            .map_err(|_| format!("`{port}` is not a port number"))?;
        Ok(HostPort {
            host: host.to_owned(),
            port,
        })
    }
}

impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

/// `KEY=VALUE`: a Kubernetes label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Label {
    /// The label's key.
    pub key: String,
    /// The label's value.
    pub value: String,
}

impl FromStr for Label {
    type Err = String;

    fn from_str(text: &str) -> Result<Label, String> {
        match text.split_once('=') {
            Some((k, v)) if !k.is_empty() && !v.is_empty() => Ok(Label {
                key: k.to_owned(),
                value: v.to_owned(),
            }),
            _ => Err(format!("expected KEY=VALUE, got `{text}`")),
        }
    }
}

impl fmt::Display for Label {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.key, self.value)
    }
}

/// What every ramp command needs: the plan, where its files are, and the output form.
#[derive(Debug, Clone, Args)]
pub struct PlanArgs {
    /// The ramp plan.
    #[arg(long, value_name = "FILE")]
    pub plan: PathBuf,
    /// The state file (overrides the plan's).
    #[arg(long, value_name = "FILE")]
    pub state: Option<PathBuf>,
    /// The audit log (overrides the plan's).
    #[arg(long, value_name = "FILE")]
    pub audit: Option<PathBuf>,
    /// One JSON object on stdout, also when a gate fails.
    #[arg(long)]
    pub json: bool,
}

/// Who changes a ramp and why, for the audit log.
#[derive(Debug, Clone, Default, Args)]
pub struct ChangeArgs {
    /// The actor recorded in the audit log (default: $USER).
    #[arg(long, value_name = "NAME")]
    pub by: Option<String>,
    /// Why, recorded in the audit log.
    #[arg(long, value_name = "TEXT")]
    pub reason: Option<String>,
}

/// A ramp command that changes the ramp: the plan, and who changes it and why.
#[derive(Debug, Clone, Args)]
pub struct ChangeCommand {
    /// The plan.
    #[command(flatten)]
    pub plan: PlanArgs,
    /// Actor and reason.
    #[command(flatten)]
    pub change: ChangeArgs,
}

/// The `rampart ramp` commands.
#[derive(Debug, Subcommand)]
pub enum RampCommand {
    /// Check the live config is the plan's snapshot, lock it, publish the first step.
    Start(ChangeCommand),
    /// State, live config vs lock, drift since the step began, drift pause, bake time,
    /// audit and publish health (writes nothing).
    Status {
        /// The plan.
        #[command(flatten)]
        plan: PlanArgs,
    },
    /// Gate 1 live config has the locked digest (else block and print the delta), gate 2
    /// drift ratio and min requests, gate 3 bake time; then the next step.
    Advance(ChangeCommand),
    /// Hold at the current step (traffic unchanged).
    Pause(ChangeCommand),
    /// Continue a paused ramp, or a blocked one (a config block only once the live
    /// config is the locked one again).
    Resume(ChangeCommand),
    /// Everyone to stable at once (publishes 0%).
    Revert(ChangeCommand),
    /// The locked snapshot vs the live one: JSON pointers, old and new digests.
    Diff {
        /// The plan.
        #[command(flatten)]
        plan: PlanArgs,
    },
    /// The approval statement to sign for the live config (contract, old and new
    /// digests, delta digest, the audit head it extends, time), for plans that require
    /// signed approvals (approval.allowed_signers). Writes nothing else.
    #[command(
        after_help = "Sign it with `ssh-keygen -Y sign -f KEY -n rampart-approval FILE` \
within 15 minutes, then `rampart ramp approve --statement FILE --signature FILE.sig --reason TEXT`."
    )]
    Statement(StatementArgs),
    /// Accept the live config: binds old -> new digest and the delta's digest, re-locks,
    /// restarts or resumes (the plan's approval.after_approval).
    Approve(ApproveArgs),
}

/// `rampart ramp statement`.
#[derive(Debug, Args)]
pub struct StatementArgs {
    /// The plan.
    #[command(flatten)]
    pub plan: PlanArgs,
    /// Write the statement to FILE (atomically) instead of standard output.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

/// `rampart ramp approve`.
#[derive(Debug, Args)]
pub struct ApproveArgs {
    /// The plan.
    #[command(flatten)]
    pub plan: PlanArgs,
    /// Who approves (the audit record's actor); for plans without
    /// approval.allowed_signers, where it is required.
    #[arg(long, value_name = "NAME", conflicts_with = "signature")]
    pub by: Option<String>,
    /// Why the change is accepted.
    #[arg(long, value_name = "TEXT")]
    pub reason: String,
    /// The digest of the reviewed delta; refuses if the live delta is another one.
    #[arg(long, value_name = "DIGEST")]
    pub expect_delta: Option<String>,
    /// The statement `rampart ramp statement` wrote, as signed (signed approvals).
    #[arg(long, value_name = "FILE", requires = "signature")]
    pub statement: Option<PathBuf>,
    /// Its signature, `ssh-keygen -Y sign -n rampart-approval` (signed approvals); the
    /// approver is the principal allowed_signers lists for the key.
    #[arg(long, value_name = "FILE", requires = "statement")]
    pub signature: Option<PathBuf>,
}

impl RampCommand {
    /// The command's name, as `--json` answers name it.
    pub fn name(&self) -> &'static str {
        match self {
            RampCommand::Start(_) => "start",
            RampCommand::Status { .. } => "status",
            RampCommand::Advance(_) => "advance",
            RampCommand::Pause(_) => "pause",
            RampCommand::Resume(_) => "resume",
            RampCommand::Revert(_) => "revert",
            RampCommand::Diff { .. } => "diff",
            RampCommand::Statement(_) => "statement",
            RampCommand::Approve(_) => "approve",
        }
    }
}

/// Where `rampart audit` finds the log: a plan's, or a file.
#[derive(Debug, Clone, Args)]
#[group(required = true, multiple = true)]
pub struct AuditSource {
    /// The ramp plan whose audit log (and state) to read.
    #[arg(long, value_name = "FILE")]
    pub plan: Option<PathBuf>,
    /// The audit log (overrides the plan's).
    #[arg(long, value_name = "FILE")]
    pub audit: Option<PathBuf>,
}

/// The `rampart audit` commands.
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check the hash chain and that it ends at the state's head; names the first bad record.
    Verify {
        /// The log.
        #[command(flatten)]
        source: AuditSource,
        /// The state file whose head the log must end at (overrides the plan's).
        #[arg(long, value_name = "FILE")]
        state: Option<PathBuf>,
        /// One JSON object on stdout.
        #[arg(long)]
        json: bool,
    },
    /// The records, one line each.
    Show {
        /// The log.
        #[command(flatten)]
        source: AuditSource,
        /// The records as JSON, one per line.
        #[arg(long)]
        json: bool,
    },
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn typed_values_parse_and_print_back() {
        let hp: HostPort = "127.0.0.1:9901".parse().unwrap();
        assert_eq!((hp.host.as_str(), hp.port), ("127.0.0.1", 9901));
        assert_eq!(hp.to_string(), "127.0.0.1:9901");
        assert!("localhost".parse::<HostPort>().is_err());
        assert!("h:99999".parse::<HostPort>().is_err());
        assert_eq!(
            "app=frontend".parse::<Label>().unwrap().to_string(),
            "app=frontend"
        );
        assert!("app=".parse::<Label>().is_err());
    }

    #[test]
    fn each_render_target_takes_only_its_own_options() {
        let parse = |args: &[&str]| Cli::try_parse_from(args.iter().copied());
        assert!(parse(&[
            "rampart",
            "render",
            "istio",
            "--contract",
            "c",
            "--host",
            "h"
        ])
        .is_ok());
        assert!(parse(&[
            "rampart",
            "render",
            "istio",
            "--contract",
            "c",
            "--port",
            "1"
        ])
        .is_err());
        assert!(parse(&[
            "rampart",
            "render",
            "ecds",
            "--contract",
            "c",
            "--node",
            "n"
        ])
        .is_err());
        assert!(parse(&["rampart", "render", "envoy", "--contract", "c"]).is_err());
        assert!(parse(&[
            "rampart",
            "render",
            "istio",
            "--contract",
            "c",
            "--plan",
            "p"
        ])
        .is_err());
        assert!(parse(&["rampart", "render", "istio"]).is_err());
        let analysis = |target: &str, extra: &[&str]| {
            let mut args = vec!["rampart", "render", target, "--contract", "c"];
            args.extend(extra);
            parse(&args).is_ok()
        };
        assert!(analysis(
            "argo-rollouts",
            &["--failure-limit", "2", "--window", "10m"]
        ));
        assert!(!analysis("argo-rollouts", &["--iterations", "2"]));
        assert!(analysis(
            "flagger",
            &["--iterations", "5", "--threshold", "2"]
        ));
        assert!(!analysis("flagger", &["--failure-limit", "2"]));
        assert!(!analysis("flagger", &["--threshold", "0"]));
        assert!(!analysis("flagger", &["--interval", "1h"]));
        assert!(!analysis("argo-rollouts", &["--window", "5"]));
        assert!(!analysis("argo-rollouts", &["--window", "0m"]));
        assert!(!analysis("argo-rollouts", &["--max-drift-ratio", "1.5"]));
        assert!(!analysis(
            "argo-rollouts",
            &["--prometheus", "prometheus:9090"]
        ));
        assert!(parse(&[
            "rampart",
            "render",
            "envoy-gateway",
            "--plan",
            "p",
            "--port",
            "x"
        ])
        .is_err());
    }
}
