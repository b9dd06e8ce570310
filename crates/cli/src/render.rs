//! `rampart render envoy|ecds|istio|envoy-gateway|argo-rollouts|flagger|grafana`:
//! deployable configuration for a contract, analysis gates for progressive-delivery
//! controllers, and a Grafana dashboard.
//!
//! Every target routes the same safe way: the filter writes the route header, an
//! exact match on the canary value selects the canary, and the default route goes
//! to stable. A missing filter or a forged header can at worst reach the canary,
//! never an arbitrary cluster (no `cluster_header`).

use std::fmt::{Display, Write as _};
use std::path::{Path, PathBuf};

use rampart::contract::ContractSpec;
use rampart::decide::DECISION_FORMAT;
use rampart::metrics::{stats_tags, TAGS};
use serde_json::{json, Map, Value};

use crate::args::{
    AnalysisArgs, ArgoArgs, ContractSource, EnvoyArgs, FlaggerArgs, GatewayArgs, HostPort,
    ImagePin, IstioArgs, Phase, RenderTarget, DEFAULT_ADMIN, DEFAULT_CANARY,
    DEFAULT_CANARY_SERVICE, DEFAULT_ECDS_PATH, DEFAULT_FAILURE_LIMIT, DEFAULT_FILTER_NAME,
    DEFAULT_GATEWAY, DEFAULT_HOST, DEFAULT_IMAGE, DEFAULT_INTERVAL, DEFAULT_ITERATIONS,
    DEFAULT_LISTEN, DEFAULT_MAX_DRIFT_RATIO, DEFAULT_NAMESPACE, DEFAULT_NODE, DEFAULT_PORT,
    DEFAULT_PRIORITY, DEFAULT_PROMETHEUS, DEFAULT_ROUTE, DEFAULT_SELECTOR, DEFAULT_STABLE,
    DEFAULT_STABLE_SERVICE, DEFAULT_THRESHOLD, DEFAULT_VERSION_LABEL, DEFAULT_WASM_PATH,
    DEFAULT_WINDOW,
};
use crate::ecds;
use crate::files::write_atomically;
use crate::metrics::{drift_pause_query, drift_ratio_query};
use crate::oci;
use crate::{Failure, Outcome};

mod grafana;

/// A rendered file: its name in the output directory and its text.
struct Rendered {
    name: &'static str,
    text: String,
}

/// The contract to render, as the filter will read it.
struct Contract {
    /// The JSON as written (it becomes the plugin configuration verbatim).
    value: Value,
    /// The file it came from, for the generated files' headers.
    source: String,
    /// Its name.
    name: String,
    /// The route header (lower case) and the value that selects the canary, as the
    /// core resolves them (the contract's, or the defaults).
    route_header: String,
    canary_value: String,
    /// `explain.response_header`: the debug header Envoy adds from filter state.
    debug_header: Option<String>,
    /// With `--plan`: the plan's `gates.max_drift_ratio`.
    plan_max_drift_ratio: Option<f64>,
}

/// Runs `rampart render TARGET ...`.
pub fn render(target: &RenderTarget) -> Outcome {
    let (source, out_dir) = match target {
        RenderTarget::Envoy(a) => (&a.source, Some(&a.out_dir)),
        RenderTarget::Ecds(a) => (&a.source, a.out_dir.as_ref()),
        RenderTarget::Istio(IstioArgs { manifests: m, .. })
        | RenderTarget::EnvoyGateway(GatewayArgs { manifests: m, .. })
        | RenderTarget::ArgoRollouts(ArgoArgs {
            analysis: AnalysisArgs { manifests: m, .. },
            ..
        })
        | RenderTarget::Flagger(FlaggerArgs {
            analysis: AnalysisArgs { manifests: m, .. },
            ..
        }) => (&m.source, m.out_dir.as_ref()),
        // The dashboard takes no contract: its `$contract` variable lists them.
        RenderTarget::Grafana(args) => {
            return write_files(&[grafana::dashboard(args)], args.out_dir.as_ref())
        }
    };
    let contract = load_contract(source)?;
    let mut command = CommandLine::new(target.name(), source, &contract.source);
    let files = match target {
        RenderTarget::Envoy(args) => envoy(args, &contract, &mut command)?,
        RenderTarget::Ecds(args) => vec![ecds_resource(&args.filter_name, &args.wasm, &contract)?],
        RenderTarget::Istio(args) => istio(args, &contract, &mut command)?,
        RenderTarget::EnvoyGateway(args) => envoy_gateway(args, &contract, &mut command)?,
        RenderTarget::ArgoRollouts(args) => argo_rollouts(args, &contract, &mut command),
        RenderTarget::Flagger(args) => flagger(args, &contract, &mut command),
        RenderTarget::Grafana(args) => vec![grafana::dashboard(args)],
    };
    write_files(&files, out_dir)
}

/// Writes `files` to `out_dir`, or prints them as one YAML stream.
fn write_files(files: &[Rendered], out_dir: Option<&PathBuf>) -> Outcome {
    match out_dir {
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .map_err(|e| Failure::Usage(format!("{}: {e}", dir.display())))?;
            for file in files {
                let path = dir.join(file.name);
                write_atomically(&path, file.text.as_bytes())
                    .map_err(|e| Failure::Usage(format!("{}: {e}", path.display())))?;
                println!("wrote {}", path.display());
            }
        }
        None => {
            let texts: Vec<&str> = files.iter().map(|f| f.text.as_str()).collect();
            print!("{}", texts.join("---\n"));
        }
    }
    Ok(())
}

/// The contract of `--contract FILE`, or the contract file `--plan FILE` names.
fn load_contract(source: &ContractSource) -> Result<Contract, Failure> {
    let (path, from_plan) = match (&source.contract, &source.plan) {
        (Some(c), _) => (c.clone(), false),
        (None, Some(p)) => (p.clone(), true),
        // clap's argument group requires exactly one of the two.
        (None, None) => {
            return Err(Failure::Usage(
                "give exactly one of --contract FILE or --plan FILE".into(),
            ))
        }
    };
    let mut value = read_value(&path)?;
    let mut plan_max_drift_ratio = None;
    if from_plan {
        if let Some(limit) = value.get("gates").and_then(|g| g.get("max_drift_ratio")) {
            let limit = limit
                .as_f64()
                .filter(|r| (0.0..=1.0).contains(r))
                .ok_or_else(|| {
                    Failure::Invalid(format!(
                        "{}: gates.max_drift_ratio: must be a number from 0 to 1",
                        path.display()
                    ))
                })?;
            plan_max_drift_ratio = Some(limit);
        }
        // A plan names its contract file relative to itself.
        let Some(name) = value.get("contract").and_then(Value::as_str) else {
            return Err(Failure::Invalid(format!(
                "{}: contract: expected the contract file's path",
                path.display()
            )));
        };
        let base = path.parent().unwrap_or(Path::new(""));
        value = read_value(&base.join(name))?;
    }
    // Validate with the same rules as the filter, so a broken contract never renders.
    let bytes = value.to_string();
    let plan = ContractSpec::parse(bytes.as_bytes())
        .and_then(|spec| spec.compile())
        .map_err(|e| Failure::Invalid(format!("{}: {e}", path.display())))?;
    Ok(Contract {
        value,
        source: path.display().to_string(),
        name: plan.name.clone(),
        route_header: plan.route_header.clone(),
        canary_value: plan.canary_value.clone(),
        debug_header: plan.response_header.clone(),
        plan_max_drift_ratio,
    })
}

fn read_value(path: &PathBuf) -> Result<Value, Failure> {
    let bytes =
        std::fs::read(path).map_err(|e| Failure::Usage(format!("{}: {e}", path.display())))?;
    serde_json::from_slice(&bytes)
        .map_err(|e| Failure::Invalid(format!("{}: not JSON: {e}", path.display())))
}

/// The command line that reproduces the output, for the generated files' headers:
/// the target, the contract source, and every option whose value is not the default.
struct CommandLine(String);

impl CommandLine {
    /// `rampart render TARGET`, for a target that takes no contract.
    fn bare(target: &str) -> CommandLine {
        CommandLine(format!("rampart render {target}"))
    }

    fn new(target: &str, source: &ContractSource, path: &str) -> CommandLine {
        let input = if source.plan.is_some() {
            "--plan"
        } else {
            "--contract"
        };
        CommandLine(format!("rampart render {target} {input} {path}"))
    }

    /// Adds `--name value` unless `value` is the default.
    fn option(&mut self, name: &str, value: impl Display, default: impl Display) {
        let (value, default) = (value.to_string(), default.to_string());
        if value != default {
            let _ = write!(self.0, " --{name} {value}");
        }
    }

    fn header(&self, purpose: &str) -> String {
        format!(
            "# {purpose}\n# Generated by: {}\n# Routing: exact match on the route header -> canary; everything else -> stable.\n",
            self.0
        )
    }
}

/// The debug header (`explain.response_header`) on every route: Envoy adds it from the
/// decision the filter recorded in filter state, also to the filter's own rejects. The
/// filter never touches responses, which spares every request a callback into the VM.
/// Envoy bootstrap: the virtual host's `response_headers_to_add`.
fn envoy_debug_header(contract: &Contract, virtual_host: &mut Value) {
    if let Some(name) = &contract.debug_header {
        virtual_host["response_headers_to_add"] = json!([{
            "header": { "key": name, "value": DECISION_FORMAT },
            // An upstream's copy is replaced, never passed on.
            "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
        }]);
    }
}

/// Istio: each VirtualService route's `headers` (Envoy format strings pass through).
fn istio_debug_header(contract: &Contract, routes: &mut Value) {
    if let (Some(name), Some(routes)) = (&contract.debug_header, routes.as_array_mut()) {
        for route in routes {
            route["headers"] = json!({ "response": { "set": { name.clone(): DECISION_FORMAT } } });
        }
    }
}

/// Gateway API (Envoy Gateway passes Envoy format strings through): a
/// `ResponseHeaderModifier` on each HTTPRoute rule.
fn gateway_debug_header(contract: &Contract, rules: &mut Value) {
    if let (Some(name), Some(rules)) = (&contract.debug_header, rules.as_array_mut()) {
        for rule in rules {
            rule["filters"] = json!([{
                "type": "ResponseHeaderModifier",
                "responseHeaderModifier": { "set": [{ "name": name, "value": DECISION_FORMAT }] },
            }]);
        }
    }
}

fn socket(address: &HostPort) -> Value {
    json!({ "socket_address": { "address": address.host, "port_value": address.port } })
}

fn typed(type_name: &str, mut fields: Value) -> Value {
    fields["@type"] = Value::String(format!("type.googleapis.com/{type_name}"));
    fields
}

/// The bootstrap `stats_tags` rules that turn the contract and input tags in the
/// filter's metric names into labels (`rampart::metrics::stats_tags`).
fn stats_tag_rules() -> Vec<Value> {
    stats_tags()
        .into_iter()
        .map(|(tag, regex)| json!({ "tag_name": tag, "regex": regex }))
        .collect()
}

/// `extraStatTags: [rampart_contract, rampart_input]`: the `proxy.istio.io/config`
/// (ProxyConfig) line from which Istio generates the rules of [`stats_tag_rules`].
fn istio_proxy_config() -> String {
    format!("extraStatTags: [{}]", TAGS.join(", "))
}

fn envoy(
    args: &EnvoyArgs,
    contract: &Contract,
    command: &mut CommandLine,
) -> Result<Vec<Rendered>, Failure> {
    command.option("listen", &args.listen, DEFAULT_LISTEN);
    command.option("admin", &args.admin, DEFAULT_ADMIN);
    command.option("canary", &args.canary, DEFAULT_CANARY);
    command.option("stable", &args.stable, DEFAULT_STABLE);
    command.option("ecds-path", args.ecds_path.display(), DEFAULT_ECDS_PATH);
    command.option("wasm", &args.wasm, DEFAULT_WASM_PATH);
    command.option("node", &args.node, DEFAULT_NODE);
    command.option("filter-name", &args.filter_name, DEFAULT_FILTER_NAME);
    let cluster = |name: &str, address: &HostPort| {
        json!({
            "name": name,
            "type": "STATIC",
            "load_assignment": {
                "cluster_name": name,
                "endpoints": [{ "lb_endpoints": [{ "endpoint": { "address": socket(address) } }] }],
            },
        })
    };
    let mut manager = typed(
        "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        json!({
            "stat_prefix": "ingress",
            "http_filters": [
                ecds::http_filter_entry(&args.filter_name, &args.ecds_path),
                { "name": "envoy.filters.http.router",
                  "typed_config": typed("envoy.extensions.filters.http.router.v3.Router", json!({})) },
            ],
            "route_config": {
                "name": "ingress",
                "virtual_hosts": [{
                    "name": "app",
                    "domains": ["*"],
                    "routes": [
                        {
                            "match": {
                                "prefix": "/",
                                "headers": [{ "name": contract.route_header, "string_match": { "exact": contract.canary_value } }],
                            },
                            "route": { "cluster": "canary" },
                        },
                        { "match": { "prefix": "/" }, "route": { "cluster": "stable" } },
                    ],
                }],
            },
        }),
    );
    envoy_debug_header(contract, &mut manager["route_config"]["virtual_hosts"][0]);
    let bootstrap = json!({
        // xDS sources, ECDS from a file included, need the node's identity.
        "node": { "id": args.node, "cluster": args.node },
        "admin": { "address": socket(&args.admin) },
        "stats_config": { "stats_tags": stats_tag_rules() },
        "static_resources": {
            "listeners": [{
                "name": "ingress",
                "address": socket(&args.listen),
                "filter_chains": [{ "filters": [{
                    "name": "envoy.filters.network.http_connection_manager",
                    "typed_config": manager,
                }] }],
            }],
            "clusters": [
                cluster("canary", &args.canary),
                cluster("stable", &args.stable),
            ],
        },
    });
    let mut bootstrap_text = command.header(&format!(
        "Envoy bootstrap for contract {}: the Rampart filter comes by ECDS from {}.",
        contract.name,
        args.ecds_path.display()
    ));
    bootstrap_text.push_str(
        "# Publishing = atomically replacing that file (the `rampart ramp` commands do it);\n\
         # Envoy applies it live, no restart. Start: envoy -c envoy.yaml\n",
    );
    bootstrap_text.push_str(&to_yaml(&bootstrap));
    Ok(vec![
        Rendered {
            name: "envoy.yaml",
            text: bootstrap_text,
        },
        ecds_resource(&args.filter_name, &args.wasm, contract)?,
    ])
}

/// The ECDS resource (JSON) carrying the contract, as `rampart.ecds.json`.
fn ecds_resource(filter_name: &str, wasm: &str, contract: &Contract) -> Result<Rendered, Failure> {
    let resource = ecds::discovery_resource(filter_name, wasm, &contract.value);
    let mut text =
        serde_json::to_string_pretty(&resource).map_err(|e| Failure::Invalid(e.to_string()))?;
    text.push('\n');
    Ok(Rendered {
        name: "rampart.ecds.json",
        text,
    })
}

/// The `sha256` to pin (hex, no prefix) from `--sha256` or `--image-layout`, also
/// recorded in the header's command line. For an image Istio and Envoy Gateway compare
/// it with the manifest's digest.
fn pinned_sha256(
    wasm: &str,
    pin: &ImagePin,
    command: &mut CommandLine,
) -> Result<Option<String>, Failure> {
    let hex = resolve_pin(wasm, pin)?;
    if let Some(hex) = &hex {
        // The resolved digest, so the header reproduces the file without the layout.
        command.option("sha256", hex, "");
    }
    Ok(hex)
}

fn resolve_pin(wasm: &str, pin: &ImagePin) -> Result<Option<String>, Failure> {
    if let Some(given) = &pin.sha256 {
        let digest = format!("sha256:{}", given.trim_start_matches("sha256:"));
        rampart::Digest::parse_bytes(digest.as_bytes())
            .map_err(|e| Failure::Usage(format!("--sha256 {given}: {e}")))?;
        return Ok(Some(digest["sha256:".len()..].to_owned()));
    }
    let Some(dir) = &pin.image_layout else {
        return Ok(None);
    };
    let reference = wasm.strip_prefix("oci://").unwrap_or(wasm);
    if reference.contains("://") {
        return Err(Failure::Usage(format!(
            "--image-layout pins an OCI image; --wasm is {wasm}"
        )));
    }
    // REGISTRY[:PORT]/REPO[:TAG][@DIGEST]: the tag follows the last `/`.
    let (name, pinned) = match reference.split_once('@') {
        Some((name, digest)) => (name, Some(digest)),
        None => (reference, None),
    };
    let last = name.rsplit('/').next().unwrap_or(name);
    let tag = last.split_once(':').map(|(_, tag)| tag);
    let digest = oci::layout_digest(dir, if pinned.is_some() { None } else { tag })?;
    if pinned.is_some_and(|pinned| pinned != digest) {
        return Err(Failure::Invalid(format!(
            "--wasm {wasm} names a digest other than the image in {} ({digest})",
            dir.display()
        )));
    }
    Ok(Some(digest["sha256:".len()..].to_owned()))
}

fn istio(
    args: &IstioArgs,
    contract: &Contract,
    command: &mut CommandLine,
) -> Result<Vec<Rendered>, Failure> {
    command.option("namespace", &args.manifests.namespace, DEFAULT_NAMESPACE);
    command.option("selector", &args.selector, DEFAULT_SELECTOR);
    command.option("host", &args.host, DEFAULT_HOST);
    command.option("version-label", &args.version_label, DEFAULT_VERSION_LABEL);
    command.option("phase", args.phase.as_str(), Phase::Authz.as_str());
    command.option("priority", args.priority, DEFAULT_PRIORITY);
    command.option("wasm", &args.wasm, DEFAULT_IMAGE);
    command.option("filter-name", &args.filter_name, DEFAULT_FILTER_NAME);
    let sha256 = pinned_sha256(&args.wasm, &args.pin, command)?;
    let (namespace, host, version_label) =
        (&args.manifests.namespace, &args.host, &args.version_label);
    let name = &contract.name;
    let mut plugin = json!({
        "apiVersion": "extensions.istio.io/v1alpha1",
        "kind": "WasmPlugin",
        "metadata": { "name": format!("rampart-{name}"), "namespace": namespace },
        "spec": {
            "selector": { "matchLabels": { args.selector.key.clone(): args.selector.value } },
            "url": args.wasm,
            "pluginName": args.filter_name,
            "phase": args.phase.as_str(),
            "priority": args.priority,
            "type": "HTTP",
            // A skipped filter would let a forged route header through.
            "failStrategy": "FAIL_CLOSE",
            "pluginConfig": contract.value,
        },
    });
    let mut virtual_service = json!({
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": { "name": format!("{host}-rampart"), "namespace": namespace },
        "spec": {
            "hosts": [host],
            "http": [
                {
                    "name": "rampart-canary",
                    "match": [{ "headers": { contract.route_header.clone(): { "exact": contract.canary_value } } }],
                    "route": [{ "destination": { "host": host, "subset": "canary" } }],
                },
                {
                    "name": "rampart-stable",
                    "route": [{ "destination": { "host": host, "subset": "stable" } }],
                },
            ],
        },
    });
    if let Some(hex) = sha256 {
        plugin["spec"]["sha256"] = Value::String(hex);
    }
    istio_debug_header(contract, &mut virtual_service["spec"]["http"]);
    let destination_rule = json!({
        "apiVersion": "networking.istio.io/v1",
        "kind": "DestinationRule",
        "metadata": { "name": format!("{host}-rampart"), "namespace": namespace },
        "spec": {
            "host": host,
            "subsets": [
                { "name": "canary", "labels": { version_label.clone(): "canary" } },
                { "name": "stable", "labels": { version_label.clone(): "stable" } },
            ],
        },
    });
    let mut plugin_text = command.header(&format!(
        "Istio WasmPlugin: the Rampart filter with contract {name} as pluginConfig."
    ));
    plugin_text.push_str(&format!(
        "# It must run in the proxy that routes to `{host}` (the selected workload's sidecar or\n\
         # the ingress gateway): the VirtualService in routing.yaml is evaluated there.\n"
    ));
    plugin_text.push_str(&to_yaml(&plugin));
    let mut routing_text = command.header(&format!(
        "Istio routing for {host}: subsets by pod label `{version_label}`."
    ));
    routing_text.push_str(&to_yaml(&virtual_service));
    routing_text.push_str("---\n");
    routing_text.push_str(&to_yaml(&destination_rule));
    let stats_patch = json!({
        "spec": { "template": { "metadata": { "annotations": {
            "proxy.istio.io/config": istio_proxy_config(),
        } } } },
    });
    let mut stats_text = command.header(&format!(
        "Istio stats tags for contract {name}: a patch for the pod template of the workload the \
         WasmPlugin selects."
    ));
    stats_text.push_str(&format!(
        "# The filter names its metrics with the contract and input as tags (rampart_contract=.=...;.;).\n\
         # Istio generates the stats_tags rule that makes a tag a Prometheus label only for the\n\
         # names in extraStatTags; without them the contract stays in the metric name. Apply:\n\
         #   kubectl -n {namespace} patch deployment <workload> --type strategic --patch-file stats-tags.yaml\n\
         # (the bootstrap is made at pod start: the patch restarts the pods). This ProxyConfig\n\
         # replaces the mesh's extraStatTags for the pod: list any the mesh sets too, or set them\n\
         # mesh-wide instead (meshConfig.defaultConfig.{}).\n",
        istio_proxy_config()
    ));
    stats_text.push_str(&to_yaml(&stats_patch));
    Ok(vec![
        Rendered {
            name: "wasmplugin.yaml",
            text: plugin_text,
        },
        Rendered {
            name: "routing.yaml",
            text: routing_text,
        },
        Rendered {
            name: "stats-tags.yaml",
            text: stats_text,
        },
    ])
}

fn envoy_gateway(
    args: &GatewayArgs,
    contract: &Contract,
    command: &mut CommandLine,
) -> Result<Vec<Rendered>, Failure> {
    command.option("namespace", &args.manifests.namespace, DEFAULT_NAMESPACE);
    command.option("gateway", &args.gateway, DEFAULT_GATEWAY);
    command.option("route", &args.route, DEFAULT_ROUTE);
    command.option(
        "canary-service",
        &args.canary_service,
        DEFAULT_CANARY_SERVICE,
    );
    command.option(
        "stable-service",
        &args.stable_service,
        DEFAULT_STABLE_SERVICE,
    );
    command.option("port", args.port, DEFAULT_PORT);
    command.option("wasm", &args.wasm, DEFAULT_IMAGE);
    command.option("filter-name", &args.filter_name, DEFAULT_FILTER_NAME);
    let mut image = json!({ "url": args.wasm });
    if let Some(hex) = pinned_sha256(&args.wasm, &args.pin, command)? {
        image["sha256"] = Value::String(hex);
    }
    let (namespace, route) = (&args.manifests.namespace, &args.route);
    let (canary_service, stable_service) = (&args.canary_service, &args.stable_service);
    let name = &contract.name;
    let policy = json!({
        "apiVersion": "gateway.envoyproxy.io/v1alpha1",
        "kind": "EnvoyExtensionPolicy",
        "metadata": { "name": format!("rampart-{name}"), "namespace": namespace },
        "spec": {
            "targetRefs": [{ "group": "gateway.networking.k8s.io", "kind": "HTTPRoute", "name": route }],
            "wasm": [{
                "name": args.filter_name,
                "rootID": "rampart",
                "code": { "type": "Image", "image": image },
                // A skipped filter would let a forged route header through.
                "failOpen": false,
                "config": contract.value,
            }],
        },
    });
    let mut http_route = json!({
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": { "name": route, "namespace": namespace },
        "spec": {
            "parentRefs": [{ "name": args.gateway }],
            "rules": [
                {
                    "matches": [{
                        "path": { "type": "PathPrefix", "value": "/" },
                        "headers": [{ "type": "Exact", "name": contract.route_header, "value": contract.canary_value }],
                    }],
                    "backendRefs": [{ "name": canary_service, "port": args.port }],
                },
                {
                    "matches": [{ "path": { "type": "PathPrefix", "value": "/" } }],
                    "backendRefs": [{ "name": stable_service, "port": args.port }],
                },
            ],
        },
    });
    gateway_debug_header(contract, &mut http_route["spec"]["rules"]);
    let mut policy_text = command.header(&format!(
        "Envoy Gateway EnvoyExtensionPolicy: the Rampart filter with contract {name} on HTTPRoute {route}."
    ));
    policy_text.push_str(&to_yaml(&policy));
    let mut route_text = command.header(&format!(
        "Gateway API HTTPRoute {route}: {canary_service} (canary) / {stable_service} (stable)."
    ));
    route_text.push_str(&to_yaml(&http_route));
    let envoy_proxy = json!({
        "apiVersion": "gateway.envoyproxy.io/v1alpha1",
        "kind": "EnvoyProxy",
        "metadata": { "name": "rampart-stats", "namespace": namespace },
        "spec": { "bootstrap": {
            "type": "JSONPatch",
            "jsonPatches": stats_tag_rules()
                .into_iter()
                .map(|rule| json!({ "op": "add", "path": "/stats_config/stats_tags/-", "value": rule }))
                .collect::<Vec<_>>(),
        } },
    });
    let mut proxy_text = command.header(
        "Envoy Gateway EnvoyProxy: the stats_tags rules that make the filter's contract and input labels.",
    );
    proxy_text.push_str(&format!(
        "# The filter names its metrics with the contract and input as tags (rampart_contract=.=...;.;);\n\
         # Envoy Gateway's bootstrap has no rule extracting them, so this patch adds two to its\n\
         # stats_config.stats_tags. Reference it from Gateway {gateway} (same namespace):\n\
         #   spec.infrastructure.parametersRef: {{group: gateway.envoyproxy.io, kind: EnvoyProxy, name: rampart-stats}}\n\
         # or from its GatewayClass (spec.parametersRef, with the namespace). If the Gateway already\n\
         # has an EnvoyProxy, add these jsonPatches to its spec.bootstrap instead.\n",
        gateway = args.gateway
    ));
    proxy_text.push_str(&to_yaml(&envoy_proxy));
    Ok(vec![
        Rendered {
            name: "envoyproxy.yaml",
            text: proxy_text,
        },
        Rendered {
            name: "envoyextensionpolicy.yaml",
            text: policy_text,
        },
        Rendered {
            name: "httproute.yaml",
            text: route_text,
        },
    ])
}

/// The options both analysis targets share, recorded on `command`; returns the
/// drift-ratio limit (`--max-drift-ratio`, else the plan's, else the default).
fn analysis_options(args: &AnalysisArgs, contract: &Contract, command: &mut CommandLine) -> f64 {
    command.option("namespace", &args.manifests.namespace, DEFAULT_NAMESPACE);
    command.option("prometheus", &args.prometheus, DEFAULT_PROMETHEUS);
    if let Some(limit) = args.max_drift_ratio {
        command.option("max-drift-ratio", limit, "");
    }
    command.option("window", &args.window, DEFAULT_WINDOW);
    command.option("interval", &args.interval, DEFAULT_INTERVAL);
    args.max_drift_ratio
        .or(contract.plan_max_drift_ratio)
        .unwrap_or(DEFAULT_MAX_DRIFT_RATIO)
}

/// What the analysis queries mean, for the generated files' headers.
fn analysis_header(contract: &Contract, window: &str, limit: f64) -> String {
    format!(
        "# Gates on contract {name}: (increase of rampart_drift + rampart_missing) / increase of\n\
         # rampart_requests over {window}, summed over every Envoy, at most {limit}; and the\n\
         # data-plane drift pause (rampart_drift_paused) off: while it holds, the filter sends\n\
         # everyone to stable and counts `paused`, so the ratio alone would look healthy.\n\
         # No data reads 0 (`or vector(0)`): a window without requests passes, as one without\n\
         # drift; the drift pause gauge not exported reads off, as the ramp's own gate reads it.\n",
        name = contract.name
    )
}

fn argo_rollouts(args: &ArgoArgs, contract: &Contract, command: &mut CommandLine) -> Vec<Rendered> {
    let limit = analysis_options(&args.analysis, contract, command);
    command.option("failure-limit", args.failure_limit, DEFAULT_FAILURE_LIMIT);
    let a = &args.analysis;
    let metric = |name: &str, condition: String, query: String| {
        json!({
            "name": name,
            "interval": a.interval.as_str(),
            "failureLimit": args.failure_limit,
            "successCondition": condition,
            "provider": { "prometheus": { "address": a.prometheus, "query": query } },
        })
    };
    let template = json!({
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "AnalysisTemplate",
        "metadata": { "name": format!("rampart-{}", contract.name), "namespace": a.manifests.namespace },
        "spec": { "metrics": [
            metric(
                "rampart-drift-ratio",
                format!("result[0] <= {limit}"),
                drift_ratio_query(&contract.name, a.window.as_str()),
            ),
            metric(
                "rampart-drift-pause",
                "result[0] == 0".to_owned(),
                drift_pause_query(&contract.name),
            ),
        ] },
    });
    let mut text = command.header(&format!(
        "Argo Rollouts AnalysisTemplate rampart-{}: the drift gate of the Rampart filter.",
        contract.name
    ));
    text.push_str(&analysis_header(contract, a.window.as_str(), limit));
    text.push_str(
        "# Argo would make an empty result an Error measurement (`result[0]` has no element; the\n\
         # analysis errors after consecutiveErrorLimit) and NaN a Failed one: the queries return neither.\n\
         # Reference it as background analysis: Rollout spec.strategy.canary.analysis.templates.\n",
    );
    text.push_str(&to_yaml(&template));
    vec![Rendered {
        name: "analysistemplate.yaml",
        text,
    }]
}

fn flagger(args: &FlaggerArgs, contract: &Contract, command: &mut CommandLine) -> Vec<Rendered> {
    let limit = analysis_options(&args.analysis, contract, command);
    command.option("threshold", args.threshold, DEFAULT_THRESHOLD);
    command.option("iterations", args.iterations, DEFAULT_ITERATIONS);
    let a = &args.analysis;
    let name = &contract.name;
    let template = |suffix: &str, query: String| {
        json!({
            "apiVersion": "flagger.app/v1beta1",
            "kind": "MetricTemplate",
            "metadata": { "name": format!("rampart-{name}-{suffix}"), "namespace": a.manifests.namespace },
            "spec": {
                "provider": { "type": "prometheus", "address": a.prometheus },
                "query": query,
            },
        })
    };
    let metric = |suffix: &str, max: f64| {
        json!({
            "name": format!("rampart-{suffix}"),
            "templateRef": { "name": format!("rampart-{name}-{suffix}"), "namespace": a.manifests.namespace },
            "thresholdRange": { "max": max },
        })
    };
    let patch = json!({ "spec": { "analysis": {
        "interval": a.interval.as_str(),
        "threshold": args.threshold,
        "iterations": args.iterations,
        "match": [{ "headers": { contract.route_header.clone(): { "exact": contract.canary_value } } }],
        "metrics": [metric("drift-ratio", limit), metric("drift-pause", 0.0)],
    } } });
    let mut templates_text = command.header(&format!(
        "Flagger MetricTemplates: the drift gate of the Rampart filter for contract {name}."
    ));
    templates_text.push_str(&analysis_header(contract, a.window.as_str(), limit));
    templates_text.push_str(
        "# Flagger counts a query without a value as a failed check: the queries always have one.\n",
    );
    templates_text.push_str(&to_yaml(&template(
        "drift-ratio",
        drift_ratio_query(name, a.window.as_str()),
    )));
    templates_text.push_str("---\n");
    templates_text.push_str(&to_yaml(&template("drift-pause", drift_pause_query(name))));
    let mut patch_text = command.header(&format!(
        "Flagger Canary analysis: A/B on the route header the Rampart filter writes, gated on contract {name}."
    ));
    patch_text.push_str(&format!(
        "# A merge patch for the Canary (kubectl patch canary <name> --type merge --patch-file\n\
         # canary-analysis.yaml). Flagger routes requests with `{header}: {value}` (exact) to the\n\
         # canary; the filter decides which carry it, so the contract's ramp sets the split.\n\
         # A drift ratio above {limit} or the drift pause fails a check; {threshold} failed checks roll back.\n",
        header = contract.route_header,
        value = contract.canary_value,
        threshold = args.threshold,
    ));
    patch_text.push_str(&to_yaml(&patch));
    vec![
        Rendered {
            name: "metrictemplates.yaml",
            text: templates_text,
        },
        Rendered {
            name: "canary-analysis.yaml",
            text: patch_text,
        },
    ]
}

/// Block-style YAML for a JSON value. Strings that YAML could read as anything but
/// the same string are written as JSON strings (valid YAML double-quoted scalars).
pub fn to_yaml(value: &Value) -> String {
    let mut out = String::new();
    match value {
        Value::Object(map) if !map.is_empty() => write_map(&mut out, map, 0),
        Value::Array(items) if !items.is_empty() => write_seq(&mut out, items, 0),
        scalar => {
            out.push_str(&scalar_text(scalar));
            out.push('\n');
        }
    }
    out
}

fn write_map(out: &mut String, map: &Map<String, Value>, indent: usize) {
    let mut first = true;
    for (key, value) in map {
        // The first key of a sequence item shares the line with its `- `.
        if !first {
            out.push_str(&" ".repeat(indent));
        }
        first = false;
        out.push_str(&scalar_text(&Value::String(key.clone())));
        out.push(':');
        write_value_after_key(out, value, indent);
    }
}

fn write_value_after_key(out: &mut String, value: &Value, indent: usize) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            out.push('\n');
            out.push_str(&" ".repeat(indent + 2));
            write_map(out, map, indent + 2);
        }
        Value::Array(items) if !items.is_empty() => {
            out.push('\n');
            out.push_str(&" ".repeat(indent));
            write_seq(out, items, indent);
        }
        scalar => {
            out.push(' ');
            out.push_str(&scalar_text(scalar));
            out.push('\n');
        }
    }
}

fn write_seq(out: &mut String, items: &[Value], indent: usize) {
    let mut first = true;
    for item in items {
        if !first {
            out.push_str(&" ".repeat(indent));
        }
        first = false;
        out.push_str("- ");
        match item {
            Value::Object(map) if !map.is_empty() => write_map(out, map, indent + 2),
            Value::Array(inner) if !inner.is_empty() => write_seq(out, inner, indent + 2),
            scalar => {
                out.push_str(&scalar_text(scalar));
                out.push('\n');
            }
        }
    }
}

fn scalar_text(value: &Value) -> String {
    match value {
        Value::String(text) if is_plain(text) => text.clone(),
        Value::Object(_) => "{}".to_owned(),
        Value::Array(_) => "[]".to_owned(),
        other => other.to_string(),
    }
}

/// Whether `text` reads back as the same string when written unquoted.
fn is_plain(text: &str) -> bool {
    let Some(first) = text.chars().next() else {
        return false;
    };
    let reserved_word = matches!(
        text.to_ascii_lowercase().as_str(),
        "true" | "false" | "null" | "yes" | "no" | "on" | "off" | "y" | "n" | "~"
    );
    let number_like = first.is_ascii_digit()
        || ((first == '-' || first == '+' || first == '.')
            && text[1..].starts_with(|c: char| c.is_ascii_digit() || c == '.'))
        || matches!(
            text.to_ascii_lowercase().as_str(),
            ".inf" | "-.inf" | ".nan"
        );
    let safe_chars = text
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/' | ' '));
    first.is_ascii_alphabetic()
        && safe_chars
        && !reserved_word
        && !number_like
        && !text.ends_with(' ')
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use crate::args::{Cli, Command};
    use clap::Parser;

    /// The digest `render istio ARGS` and `render envoy-gateway ARGS` pin (the
    /// contract is not read here); both must agree.
    fn pinned(args: &[&str]) -> Result<Option<String>, Failure> {
        let pin = |target: &str| {
            let mut line = vec!["rampart", "render", target, "--contract", "c.json"];
            line.extend_from_slice(args);
            let Some(Command::Render(render)) = Cli::try_parse_from(line).unwrap().command else {
                panic!("not render");
            };
            match render.target {
                RenderTarget::Istio(a) => resolve_pin(&a.wasm, &a.pin),
                RenderTarget::EnvoyGateway(a) => resolve_pin(&a.wasm, &a.pin),
                _ => panic!("not a Kubernetes target"),
            }
        };
        let (istio, gateway) = (pin("istio"), pin("envoy-gateway"));
        assert_eq!(istio, gateway);
        istio
    }

    #[test]
    fn sha256_is_pinned_as_hex_with_or_without_its_prefix() {
        let hex = "ab".repeat(32);
        assert_eq!(pinned(&[]).unwrap(), None);
        assert_eq!(pinned(&["--sha256", &hex]).unwrap(), Some(hex.clone()));
        let prefixed = format!("sha256:{hex}");
        assert_eq!(pinned(&["--sha256", &prefixed]).unwrap(), Some(hex));
        assert!(pinned(&["--sha256", "abc"]).is_err());
        assert!(pinned(&["--sha256", &"AB".repeat(32)]).is_err());
    }

    #[test]
    fn image_layout_pins_the_manifest_digest_of_the_urls_tag() {
        let dir = std::env::temp_dir().join(format!("rampart-render-oci-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let digest = format!("sha256:{}", "cd".repeat(32));
        let index = serde_json::json!({ "manifests": [{
            "digest": digest,
            "annotations": { oci::REF_NAME: "1.2" },
        }] });
        std::fs::write(dir.join("index.json"), index.to_string()).unwrap();
        let layout = dir.to_str().unwrap();
        let at = |url: &str| pinned(&["--wasm", url, "--image-layout", layout]);
        let hex = Some("cd".repeat(32));
        assert_eq!(at("oci://reg:5000/team/rampart:1.2").unwrap(), hex);
        assert_eq!(at(&format!("oci://reg/rampart@{digest}")).unwrap(), hex);
        // Envoy Gateway also takes the reference without the scheme.
        assert_eq!(at("reg:5000/team/rampart:1.2").unwrap(), hex);
        // Another tag, another digest, or not an image at all.
        assert!(at("oci://reg:5000/rampart:1.3").is_err());
        assert!(at(&format!("oci://reg/rampart@sha256:{}", "00".repeat(32))).is_err());
        assert!(at("https://example.com/rampart.wasm").is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
