//! `rampart render envoy|istio|envoy-gateway`: deployable configuration for a contract.
//!
//! Every target routes the same safe way: the filter writes the route header, an
//! exact match on the canary value selects the canary, and the default route goes
//! to stable. A missing filter or a forged header can at worst reach the canary,
//! never an arbitrary cluster (no `cluster_header`).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde_json::{json, Map, Value};

use crate::ecds;
use crate::{Failure, Flags, Outcome};

/// Usage of `rampart render`.
pub const USAGE: &str = "\
rampart render envoy|ecds|istio|envoy-gateway (--contract FILE | --plan FILE) [--out-dir DIR] [OPTIONS]

  The contract (or the plan's contract) becomes the Rampart filter's plugin configuration;
  routing is an exact match `ROUTE_HEADER: CANARY_VALUE` -> canary, default -> stable.
  Without --out-dir the output is printed (envoy needs --out-dir: it writes two files).

  envoy          DIR/envoy.yaml (bootstrap; the filter by ECDS from a watched file)
                 DIR/rampart.ecds.json (the ECDS resource; `rampart` ramp commands replace it)
    --listen ADDR:PORT        listener (default 0.0.0.0:10000)
    --admin ADDR:PORT         admin (default 127.0.0.1:9901)
    --canary ADDR:PORT        canary upstream (default 127.0.0.1:8081)
    --stable ADDR:PORT        stable upstream (default 127.0.0.1:8080)
    --ecds-path PATH          the watched ECDS file as Envoy sees it
                              (default /etc/envoy/rampart/rampart.ecds.json)
    --wasm PATH               the filter module (default /etc/envoy/rampart/rampart_filter.wasm)
    --node NAME               node id and cluster (default rampart)
  ecds           DIR/rampart.ecds.json only (printed without --out-dir); --wasm PATH as for envoy
  istio          DIR/wasmplugin.yaml (WasmPlugin), DIR/routing.yaml (VirtualService, DestinationRule)
    --namespace NS            (default default)
    --selector KEY=VALUE      workload whose proxy routes to the service (default app=frontend)
    --host NAME               the service the ramp splits (default checkout)
    --version-label KEY       pod label telling canary from stable (default version)
    --phase AUTHN|AUTHZ|STATS (default AUTHZ: after authentication filled the metadata)
    --priority N              (default 10)
    --wasm URL                oci://, https:// or file:// (default oci://registry.example.com/rampart/filter:0.1.0)
  envoy-gateway  DIR/envoyextensionpolicy.yaml, DIR/httproute.yaml
    --namespace NS            (default default)
    --gateway NAME            parent Gateway (default eg)
    --route NAME              HTTPRoute name (default checkout)
    --canary-service NAME     (default checkout-canary)
    --stable-service NAME     (default checkout-stable)
    --port N                  backend port (default 8080)
    --wasm URL                OCI image (default oci://registry.example.com/rampart/filter:0.1.0)
  --filter-name NAME          ECDS resource / plugin name (default rampart)";

const VALUE_FLAGS: &[&str] = &[
    "contract",
    "plan",
    "out-dir",
    "listen",
    "admin",
    "canary",
    "stable",
    "ecds-path",
    "wasm",
    "namespace",
    "selector",
    "host",
    "version-label",
    "phase",
    "priority",
    "gateway",
    "route",
    "canary-service",
    "stable-service",
    "port",
    "filter-name",
    "node",
];

/// Where a rendered Envoy bootstrap expects the filter module.
const DEFAULT_WASM_PATH: &str = "/etc/envoy/rampart/rampart_filter.wasm";

const DEFAULT_IMAGE: &str = "oci://registry.example.com/rampart/filter:0.1.0";

/// A rendered file: its name in the output directory and its text.
struct Rendered {
    name: &'static str,
    text: String,
}

/// Runs `rampart render ARGS`.
pub fn render(args: &[String]) -> Outcome {
    if args
        .first()
        .is_some_and(|a| matches!(a.as_str(), "--help" | "-h" | "help"))
    {
        println!("{USAGE}");
        return Ok(());
    }
    let flags = Flags::parse(args, VALUE_FLAGS, &[])?;
    let target = flags.one_positional("target (envoy, istio or envoy-gateway)")?;
    let (contract, source) = load_contract(&flags)?;
    let command = render_command(target, &flags, &source);
    let files = match target {
        "envoy" => envoy(&flags, &contract, &command)?,
        "ecds" => vec![ecds_resource(&flags, &contract, DEFAULT_WASM_PATH)?],
        "istio" => istio(&flags, &contract, &command)?,
        "envoy-gateway" => envoy_gateway(&flags, &contract, &command)?,
        other => {
            return Err(Failure::Usage(format!(
                "unknown render target `{other}`; expected envoy, ecds, istio or envoy-gateway"
            )))
        }
    };
    match flags.value("out-dir") {
        Some(dir) => {
            std::fs::create_dir_all(dir).map_err(|e| Failure::Usage(format!("{dir}: {e}")))?;
            for file in &files {
                let path = Path::new(dir).join(file.name);
                ecds::replace_atomically(&path, file.text.as_bytes())
                    .map_err(|e| Failure::Usage(format!("{}: {e}", path.display())))?;
                println!("wrote {}", path.display());
            }
        }
        None if target == "envoy" => {
            return Err(Failure::Usage(
                "render envoy writes two files: give --out-dir DIR".into(),
            ))
        }
        None => {
            let texts: Vec<&str> = files.iter().map(|f| f.text.as_str()).collect();
            print!("{}", texts.join("---\n"));
        }
    }
    Ok(())
}

/// The contract to render, and the file it came from (for the header comment).
fn load_contract(flags: &Flags) -> Result<(Value, String), Failure> {
    let (path, from_plan) = match (flags.value("contract"), flags.value("plan")) {
        (Some(c), None) => (PathBuf::from(c), false),
        (None, Some(p)) => (PathBuf::from(p), true),
        _ => {
            return Err(Failure::Usage(
                "give exactly one of --contract FILE or --plan FILE".into(),
            ))
        }
    };
    let mut value = read_value(&path)?;
    if from_plan {
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
    let spec = rampart::contract::ContractSpec::parse(bytes.as_bytes())
        .map_err(|e| Failure::Invalid(format!("{}: {e}", path.display())))?;
    spec.compile()
        .map_err(|e| Failure::Invalid(format!("{}: {e}", path.display())))?;
    Ok((value, path.display().to_string()))
}

fn read_value(path: &Path) -> Result<Value, Failure> {
    let bytes =
        std::fs::read(path).map_err(|e| Failure::Usage(format!("{}: {e}", path.display())))?;
    serde_json::from_slice(&bytes)
        .map_err(|e| Failure::Invalid(format!("{}: not JSON: {e}", path.display())))
}

/// The command line that reproduces the output, for the generated files' headers.
fn render_command(target: &str, flags: &Flags, source: &str) -> String {
    let mut line = format!("rampart render {target}");
    let input = if flags.value("plan").is_some() {
        "--plan"
    } else {
        "--contract"
    };
    let _ = write!(line, " {input} {source}");
    for (name, value) in &flags.values {
        if !matches!(name.as_str(), "contract" | "plan" | "out-dir") {
            let _ = write!(line, " --{name} {value}");
        }
    }
    line
}

fn header(command: &str, purpose: &str) -> String {
    format!("# {purpose}\n# Generated by: {command}\n# Routing: exact match on the route header -> canary; everything else -> stable.\n")
}

/// The route header and the value that selects the canary, from the contract.
fn route_of(contract: &Value) -> (String, String) {
    let route = &contract["route"];
    let header = route["header"].as_str().unwrap_or("x-rampart-route");
    let canary = route["canary"].as_str().unwrap_or("canary");
    (header.to_ascii_lowercase(), canary.to_owned())
}

fn contract_name(contract: &Value) -> &str {
    contract["contract"].as_str().unwrap_or("rampart")
}

fn socket(flags: &Flags, name: &str, default: &str) -> Result<Value, Failure> {
    let text = flags.value(name).unwrap_or(default);
    let Some((host, port)) = text.rsplit_once(':') else {
        return Err(Failure::Usage(format!(
            "--{name}: expected ADDR:PORT, got `{text}`"
        )));
    };
    let port: u16 = port
        .parse()
        .map_err(|_| Failure::Usage(format!("--{name}: `{port}` is not a port number")))?;
    Ok(json!({ "socket_address": { "address": host, "port_value": port } }))
}

fn typed(type_name: &str, mut fields: Value) -> Value {
    fields["@type"] = Value::String(format!("type.googleapis.com/{type_name}"));
    fields
}

fn envoy(flags: &Flags, contract: &Value, command: &str) -> Result<Vec<Rendered>, Failure> {
    let filter_name = flags.value("filter-name").unwrap_or("rampart");
    let ecds_path = flags
        .value("ecds-path")
        .unwrap_or("/etc/envoy/rampart/rampart.ecds.json");
    let wasm = flags.value("wasm").unwrap_or(DEFAULT_WASM_PATH);
    let (route_header, canary_value) = route_of(contract);
    let cluster = |name: &str, address: Value| {
        json!({
            "name": name,
            "type": "STATIC",
            "load_assignment": {
                "cluster_name": name,
                "endpoints": [{ "lb_endpoints": [{ "endpoint": { "address": address } }] }],
            },
        })
    };
    let manager = typed(
        "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        json!({
            "stat_prefix": "ingress",
            "http_filters": [
                ecds::http_filter_entry(filter_name, Path::new(ecds_path)),
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
                                "headers": [{ "name": route_header, "string_match": { "exact": canary_value } }],
                            },
                            "route": { "cluster": "canary" },
                        },
                        { "match": { "prefix": "/" }, "route": { "cluster": "stable" } },
                    ],
                }],
            },
        }),
    );
    let node = flags.value("node").unwrap_or("rampart");
    let bootstrap = json!({
        // xDS sources, ECDS from a file included, need the node's identity.
        "node": { "id": node, "cluster": node },
        "admin": { "address": socket(flags, "admin", "127.0.0.1:9901")? },
        "stats_config": {
            "stats_tags": [{
                "tag_name": "rampart_contract",
                "regex": "^wasmcustom\\.rampart\\.(([a-z0-9_-]+)\\.)",
            }],
        },
        "static_resources": {
            "listeners": [{
                "name": "ingress",
                "address": socket(flags, "listen", "0.0.0.0:10000")?,
                "filter_chains": [{ "filters": [{
                    "name": "envoy.filters.network.http_connection_manager",
                    "typed_config": manager,
                }] }],
            }],
            "clusters": [
                cluster("canary", socket(flags, "canary", "127.0.0.1:8081")?),
                cluster("stable", socket(flags, "stable", "127.0.0.1:8080")?),
            ],
        },
    });
    let mut bootstrap_text = header(
        command,
        &format!(
            "Envoy bootstrap for contract {}: the Rampart filter comes by ECDS from {ecds_path}.",
            contract_name(contract)
        ),
    );
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
        ecds_resource(flags, contract, wasm)?,
    ])
}

/// The ECDS resource (JSON) carrying `contract`, as `rampart.ecds.json`.
fn ecds_resource(flags: &Flags, contract: &Value, default_wasm: &str) -> Result<Rendered, Failure> {
    let filter_name = flags.value("filter-name").unwrap_or("rampart");
    let wasm = flags.value("wasm").unwrap_or(default_wasm);
    let mut text =
        serde_json::to_string_pretty(&ecds::discovery_resource(filter_name, wasm, contract))
            .map_err(|e| Failure::Invalid(e.to_string()))?;
    text.push('\n');
    Ok(Rendered {
        name: "rampart.ecds.json",
        text,
    })
}

fn label(flags: &Flags, name: &str, default: &str) -> Result<(String, String), Failure> {
    let text = flags.value(name).unwrap_or(default);
    match text.split_once('=') {
        Some((k, v)) if !k.is_empty() && !v.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(Failure::Usage(format!(
            "--{name}: expected KEY=VALUE, got `{text}`"
        ))),
    }
}

fn istio(flags: &Flags, contract: &Value, command: &str) -> Result<Vec<Rendered>, Failure> {
    let namespace = flags.value("namespace").unwrap_or("default");
    let (selector_key, selector_value) = label(flags, "selector", "app=frontend")?;
    let host = flags.value("host").unwrap_or("checkout");
    let version_label = flags.value("version-label").unwrap_or("version");
    let phase = flags.value("phase").unwrap_or("AUTHZ");
    if !matches!(phase, "AUTHN" | "AUTHZ" | "STATS") {
        return Err(Failure::Usage(format!(
            "--phase: expected AUTHN, AUTHZ or STATS, got `{phase}`"
        )));
    }
    let priority: i64 = flags
        .value("priority")
        .unwrap_or("10")
        .parse()
        .map_err(|_| Failure::Usage("--priority: expected an integer".into()))?;
    let url = flags.value("wasm").unwrap_or(DEFAULT_IMAGE);
    let filter_name = flags.value("filter-name").unwrap_or("rampart");
    let name = contract_name(contract);
    let (route_header, canary_value) = route_of(contract);
    let plugin = json!({
        "apiVersion": "extensions.istio.io/v1alpha1",
        "kind": "WasmPlugin",
        "metadata": { "name": format!("rampart-{name}"), "namespace": namespace },
        "spec": {
            "selector": { "matchLabels": { selector_key: selector_value } },
            "url": url,
            "pluginName": filter_name,
            "phase": phase,
            "priority": priority,
            "type": "HTTP",
            // A skipped filter would let a forged route header through.
            "failStrategy": "FAIL_CLOSE",
            "pluginConfig": contract,
        },
    });
    let virtual_service = json!({
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": { "name": format!("{host}-rampart"), "namespace": namespace },
        "spec": {
            "hosts": [host],
            "http": [
                {
                    "name": "rampart-canary",
                    "match": [{ "headers": { route_header: { "exact": canary_value } } }],
                    "route": [{ "destination": { "host": host, "subset": "canary" } }],
                },
                {
                    "name": "rampart-stable",
                    "route": [{ "destination": { "host": host, "subset": "stable" } }],
                },
            ],
        },
    });
    let destination_rule = json!({
        "apiVersion": "networking.istio.io/v1",
        "kind": "DestinationRule",
        "metadata": { "name": format!("{host}-rampart"), "namespace": namespace },
        "spec": {
            "host": host,
            "subsets": [
                { "name": "canary", "labels": { version_label: "canary" } },
                { "name": "stable", "labels": { version_label: "stable" } },
            ],
        },
    });
    let mut plugin_text = header(
        command,
        &format!("Istio WasmPlugin: the Rampart filter with contract {name} as pluginConfig."),
    );
    plugin_text.push_str(&format!(
        "# It must run in the proxy that routes to `{host}` (the selected workload's sidecar or\n\
         # the ingress gateway): the VirtualService in routing.yaml is evaluated there.\n"
    ));
    plugin_text.push_str(&to_yaml(&plugin));
    let mut routing_text = header(
        command,
        &format!("Istio routing for {host}: subsets by pod label `{version_label}`."),
    );
    routing_text.push_str(&to_yaml(&virtual_service));
    routing_text.push_str("---\n");
    routing_text.push_str(&to_yaml(&destination_rule));
    Ok(vec![
        Rendered {
            name: "wasmplugin.yaml",
            text: plugin_text,
        },
        Rendered {
            name: "routing.yaml",
            text: routing_text,
        },
    ])
}

fn envoy_gateway(flags: &Flags, contract: &Value, command: &str) -> Result<Vec<Rendered>, Failure> {
    let namespace = flags.value("namespace").unwrap_or("default");
    let gateway = flags.value("gateway").unwrap_or("eg");
    let route = flags.value("route").unwrap_or("checkout");
    let canary_service = flags.value("canary-service").unwrap_or("checkout-canary");
    let stable_service = flags.value("stable-service").unwrap_or("checkout-stable");
    let port: u16 = flags
        .value("port")
        .unwrap_or("8080")
        .parse()
        .map_err(|_| Failure::Usage("--port: expected a port number".into()))?;
    let url = flags.value("wasm").unwrap_or(DEFAULT_IMAGE);
    let filter_name = flags.value("filter-name").unwrap_or("rampart");
    let name = contract_name(contract);
    let (route_header, canary_value) = route_of(contract);
    let policy = json!({
        "apiVersion": "gateway.envoyproxy.io/v1alpha1",
        "kind": "EnvoyExtensionPolicy",
        "metadata": { "name": format!("rampart-{name}"), "namespace": namespace },
        "spec": {
            "targetRefs": [{ "group": "gateway.networking.k8s.io", "kind": "HTTPRoute", "name": route }],
            "wasm": [{
                "name": filter_name,
                "rootID": "rampart",
                "code": { "type": "Image", "image": { "url": url } },
                // A skipped filter would let a forged route header through.
                "failOpen": false,
                "config": contract,
            }],
        },
    });
    let http_route = json!({
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": { "name": route, "namespace": namespace },
        "spec": {
            "parentRefs": [{ "name": gateway }],
            "rules": [
                {
                    "matches": [{
                        "path": { "type": "PathPrefix", "value": "/" },
                        "headers": [{ "type": "Exact", "name": route_header, "value": canary_value }],
                    }],
                    "backendRefs": [{ "name": canary_service, "port": port }],
                },
                {
                    "matches": [{ "path": { "type": "PathPrefix", "value": "/" } }],
                    "backendRefs": [{ "name": stable_service, "port": port }],
                },
            ],
        },
    });
    let mut policy_text = header(
        command,
        &format!(
            "Envoy Gateway EnvoyExtensionPolicy: the Rampart filter with contract {name} on HTTPRoute {route}."
        ),
    );
    policy_text.push_str(&to_yaml(&policy));
    let mut route_text = header(
        command,
        &format!(
            "Gateway API HTTPRoute {route}: {canary_service} (canary) / {stable_service} (stable)."
        ),
    );
    route_text.push_str(&to_yaml(&http_route));
    Ok(vec![
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
