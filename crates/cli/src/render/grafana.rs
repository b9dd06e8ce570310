//! `rampart render grafana`: a Grafana dashboard of the filter's metrics. Every query
//! comes from the one PromQL definition in [`crate::metrics`], with the `$contract`
//! variable as the contract and Grafana's `$__rate_interval` as the rate window.

use rampart::metrics::{Counter, FieldCounter, INPUT_TAG};
use serde_json::{json, Value};

use super::{CommandLine, Rendered};
use crate::args::{GrafanaArgs, DEFAULT_DATASOURCE, DEFAULT_MAX_DRIFT_RATIO, DEFAULT_WINDOW};
use crate::metrics::{
    contract_values_query, counter_rate_query, drift_pause_by_envoy_query, drift_ratio_query,
    field_rate_query, invalid_config_query, safe_mode_rate_query, ENVOY_LABEL,
};

/// The contract as the panels' queries name it: the dashboard variable.
pub const CONTRACT_VARIABLE: &str = "$contract";
/// The rate window of the panels' queries: Grafana's, from the scrape interval and zoom.
pub const RATE_INTERVAL: &str = "$__rate_interval";
/// The data-source input Grafana asks for on import (`${DS_PROMETHEUS}`).
const DATASOURCE_INPUT: &str = "DS_PROMETHEUS";

/// One query of a panel: the PromQL and its legend.
struct Query {
    expr: String,
    legend: String,
}

fn query(expr: String, legend: &str) -> Query {
    Query {
        expr,
        legend: legend.to_owned(),
    }
}

/// The dashboard file, `rampart.json`.
pub(super) fn dashboard(args: &GrafanaArgs) -> Rendered {
    let mut command = CommandLine::bare("grafana");
    command.option("datasource", &args.datasource, DEFAULT_DATASOURCE);
    command.option(
        "max-drift-ratio",
        args.max_drift_ratio,
        DEFAULT_MAX_DRIFT_RATIO,
    );
    command.option("window", &args.window, DEFAULT_WINDOW);
    let datasource = json!({ "type": "prometheus", "uid": args.datasource });
    let (c, w) = (CONTRACT_VARIABLE, RATE_INTERVAL);
    let window = args.window.as_str();
    let routes = [Counter::Canary, Counter::Stable, Counter::Rejected]
        .map(|counter| query(counter_rate_query(counter, c, w), counter.name()))
        .into_iter()
        .collect();
    let fields = FieldCounter::ALL
        .map(|counter| {
            let legend = format!("{{{{{INPUT_TAG}}}}} {}", counter.name());
            query(field_rate_query(counter, c, w), &legend)
        })
        .into_iter()
        .collect();
    let mut panels = vec![
        timeseries(
            "Requests by route ($contract)",
            "Requests per second the filter sent to the canary, to stable, and rejected, \
             summed over every Envoy.",
            "reqps",
            routes,
        ),
        timeseries(
            "Drift ratio ($contract)",
            &format!(
                "(drift + missing) / requests over {window}, summed over every Envoy: the \
                 query the Argo Rollouts / Flagger analyses gate on. The red line is the \
                 limit, {limit}. No request in the window reads 0.",
                limit = args.max_drift_ratio
            ),
            "percentunit",
            vec![query(drift_ratio_query(c, window), "drift ratio")],
        ),
        timeseries(
            "Drift by input ($contract)",
            "Per-second drift, missing and invalid counts of each input (rampart_input), \
             summed over every Envoy.",
            "reqps",
            fields,
        ),
        state_timeline(
            "Drift pause per Envoy ($contract)",
            "1 while that Envoy (the scrape's instance) holds the data-plane drift pause: \
             it sends everyone to stable and counts them as paused, not as drift.",
            vec![query(
                drift_pause_by_envoy_query(c),
                &format!("{{{{{ENVOY_LABEL}}}}}"),
            )],
        ),
        timeseries(
            "Safe mode and invalid configurations (every contract)",
            "Requests per second routed in safe mode, and configurations the filter \
             rejected, summed over every Envoy. Neither carries a contract.",
            "short",
            vec![
                query(safe_mode_rate_query(w), "safe-mode requests/s"),
                query(invalid_config_query(w), "invalid configurations"),
            ],
        ),
    ];
    // The drift ratio against the gate's limit: a threshold drawn as a line.
    panels[1]["fieldConfig"]["defaults"]["thresholds"] = json!({
        "mode": "absolute",
        "steps": [
            { "color": "green", "value": null },
            { "color": "red", "value": args.max_drift_ratio },
        ],
    });
    panels[1]["fieldConfig"]["defaults"]["custom"]["thresholdsStyle"] = json!({ "mode": "line" });
    // Two columns of 12 by 8, in order.
    for (index, panel) in panels.iter_mut().enumerate() {
        let (column, row) = (index % 2, index / 2);
        panel["id"] = json!(index + 1);
        panel["gridPos"] = json!({ "h": 8, "w": 12, "x": column * 12, "y": row * 8 });
        panel["datasource"] = datasource.clone();
        if let Some(targets) = panel["targets"].as_array_mut() {
            for target in targets {
                target["datasource"] = datasource.clone();
            }
        }
    }
    let mut dashboard = json!({
        "annotations": { "list": [] },
        "description": format!(
            "The Rampart filter's routing and drift per contract. Generated by: {}",
            command.0
        ),
        "editable": true,
        "graphTooltip": 1,
        "panels": panels,
        "refresh": "30s",
        "schemaVersion": 39,
        "tags": ["rampart"],
        "templating": { "list": [{
            "name": CONTRACT_VARIABLE.trim_start_matches('$'),
            "label": "Contract",
            "type": "query",
            "datasource": datasource,
            "definition": contract_values_query(),
            "query": { "query": contract_values_query(), "refId": "contract" },
            "refresh": 2,
            "sort": 1,
            "includeAll": false,
            "multi": false,
        }] },
        "time": { "from": "now-1h", "to": "now" },
        "timepicker": {},
        "timezone": "",
        "title": "Rampart",
        "uid": "rampart",
        "version": 1,
    });
    if args.datasource == DEFAULT_DATASOURCE {
        dashboard["__inputs"] = json!([{
            "name": DATASOURCE_INPUT,
            "label": "Prometheus",
            "description": "The Prometheus that scrapes the Envoys running the filter",
            "type": "datasource",
            "pluginId": "prometheus",
            "pluginName": "Prometheus",
        }]);
    }
    let mut text = serde_json::to_string_pretty(&dashboard).unwrap_or_default();
    text.push('\n');
    Rendered {
        name: "rampart.json",
        text,
    }
}

/// The targets of `queries`, refIds A, B, ...
fn targets(queries: Vec<Query>) -> Vec<Value> {
    queries
        .into_iter()
        .zip('A'..='Z')
        .map(|(q, ref_id)| {
            json!({
                "expr": q.expr,
                "legendFormat": q.legend,
                "range": true,
                "refId": ref_id.to_string(),
            })
        })
        .collect()
}

fn timeseries(title: &str, description: &str, unit: &str, queries: Vec<Query>) -> Value {
    json!({
        "type": "timeseries",
        "title": title,
        "description": description,
        "fieldConfig": {
            "defaults": { "unit": unit, "min": 0, "custom": { "fillOpacity": 10 } },
            "overrides": [],
        },
        "options": { "legend": { "displayMode": "list", "placement": "bottom" } },
        "targets": targets(queries),
    })
}

fn state_timeline(title: &str, description: &str, queries: Vec<Query>) -> Value {
    json!({
        "type": "state-timeline",
        "title": title,
        "description": description,
        "fieldConfig": {
            "defaults": {
                "mappings": [{ "type": "value", "options": {
                    "0": { "text": "routing", "color": "green" },
                    "1": { "text": "drift pause", "color": "red" },
                } }],
                "thresholds": { "mode": "absolute", "steps": [{ "color": "green", "value": null }] },
            },
            "overrides": [],
        },
        "options": { "showValue": "never" },
        "targets": targets(queries),
    })
}
