//! The benchmark's proxy-wasm floor: a module that makes a configured list of host
//! calls on every request and decides nothing.
//!
//! Rampart's per-request cost is mostly crossings between Envoy and the VM. To tell
//! how much of it is Rampart's own work, the benchmark (`cargo xtask bench`) runs this
//! module with exactly the host calls Rampart makes (variant A3floor) and with none
//! (A2min): the difference from Rampart is what its decision costs, and A2min is the
//! price of any filter built on our ABI crate rather than on the SDK.
//!
//! It exports the same `proxy_on_*` callbacks as the Rampart filter, because Envoy calls
//! every exported callback and each call is a crossing that belongs to the floor.
//!
//! The plugin configuration is text, one host call per line, made in order:
//!
//! ```text
//! # comments and blank lines are ignored
//! pairs                                            one proxy_get_header_map_pairs (request headers), every entry read
//! property metadata.filter_metadata.tenant.tier    one proxy_get_property ('.' separates the path segments)
//! replace x-rampart-route stable                   one proxy_replace_header_map_value (request headers)
//! increment 3                                      three proxy_increment_metric on one counter
//! filter_state rampart.decision route=stable reason=match   one proxy_set_property (the value is the rest of the line)
//! ```
//!
//! An empty configuration makes no host call at all.
//!
//! A VM may hold several root contexts (listeners sharing a `vm_id`); each keeps its own
//! list. With a single root — how the benchmark runs it, one `vm_id` per floor
//! listener — requests read that root's list directly; only when a VM holds more than
//! one does the module remember which root each request context belongs to.

use std::cell::RefCell;
use std::hint::black_box;

use rampart_abi::{LogLevel, MapType, MetricType};

/// Name of the counter `increment` adds to (Envoy shows it as `wasmcustom.<name>`).
pub const COUNTER: &str = "rampart_floor.increments";

/// One host call of the per-request list, with everything it needs prepared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Read every request header in one call and walk the entries.
    Pairs,
    /// Read one property; the path is already in wire form (segments NUL-joined).
    Property(Vec<u8>),
    /// Replace one request header.
    Replace {
        /// Header name.
        name: String,
        /// New value.
        value: Vec<u8>,
    },
    /// Add 1 to the floor's counter this many times, one host call each.
    Increment(u32),
    /// Set one property (filter state for a name outside Envoy's attributes).
    FilterState {
        /// Property name.
        name: Vec<u8>,
        /// Value.
        value: Vec<u8>,
    },
}

/// Parses the plugin configuration into the per-request list of calls.
///
/// Errors name the line, so a typo in the bench's op list fails the Envoy start-up
/// instead of silently measuring fewer calls.
pub fn parse_ops(text: &str) -> Result<Vec<Op>, String> {
    let mut ops = Vec::new();
    for (number, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (word, rest) = line
            .split_once(char::is_whitespace)
            .map_or((line, ""), |(w, r)| (w, r.trim()));
        let bad = |why: &str| format!("floor configuration line {}: {why}: `{line}`", number + 1);
        let op = match word {
            "pairs" if rest.is_empty() => Op::Pairs,
            "pairs" => return Err(bad("`pairs` takes no argument")),
            "property" => {
                if rest.is_empty() || rest.contains(char::is_whitespace) {
                    return Err(bad("`property` takes one dotted path"));
                }
                Op::Property(rampart_abi::property_path(
                    &rest.split('.').collect::<Vec<_>>(),
                ))
            }
            "replace" => match rest.split_once(char::is_whitespace) {
                Some((name, value)) => Op::Replace {
                    name: name.to_owned(),
                    value: value.trim().as_bytes().to_vec(),
                },
                None => return Err(bad("`replace` takes a header name and a value")),
            },
            "increment" => match rest.parse::<u32>() {
                Ok(times) if times > 0 => Op::Increment(times),
                _ => return Err(bad("`increment` takes a positive count")),
            },
            "filter_state" => match rest.split_once(char::is_whitespace) {
                Some((name, value)) => Op::FilterState {
                    name: name.as_bytes().to_vec(),
                    value: value.trim().as_bytes().to_vec(),
                },
                None if !rest.is_empty() => Op::FilterState {
                    name: rest.as_bytes().to_vec(),
                    value: Vec::new(),
                },
                None => return Err(bad("`filter_state` takes a name and a value")),
            },
            _ => return Err(bad("unknown call")),
        };
        ops.push(op);
    }
    Ok(ops)
}

/// One root context's prepared calls.
struct Root {
    id: u32,
    ops: Vec<Op>,
    counter: u32,
}

/// Everything the module keeps: the roots, and the request contexts' roots when a VM
/// holds more than one.
#[derive(Default)]
struct State {
    roots: Vec<Root>,
    /// (request context, root context); filled only while `roots.len() > 1`, so the
    /// single-root case (the benchmark's) does no bookkeeping per request.
    contexts: Vec<(u32, u32)>,
}

impl State {
    fn root_of(&self, context: u32) -> Option<&Root> {
        match self.roots.as_slice() {
            [only] => Some(only),
            roots => {
                let (_, root) = self.contexts.iter().find(|(c, _)| *c == context)?;
                roots.iter().find(|r| r.id == *root)
            }
        }
    }
}

thread_local! {
    // A wasm32 VM runs one thread: this is one global, and the borrow never overlaps
    // because the host does not re-enter a callback while one runs.
    static STATE: RefCell<State> = RefCell::new(State::default());
}

/// Called once when the VM starts; nothing to prepare before a root is configured.
#[no_mangle]
pub extern "C" fn proxy_on_vm_start(_root_context: u32, _configuration_size: usize) -> bool {
    true
}

/// Parses the plugin configuration of `root_context` and defines its counter.
/// A configuration that does not parse fails the filter: a benchmark must not run with
/// a list other than the one it names.
#[no_mangle]
pub extern "C" fn proxy_on_configure(root_context: u32, _configuration_size: usize) -> bool {
    let text = match rampart_abi::plugin_configuration() {
        Ok(bytes) => String::from_utf8_lossy(&bytes.unwrap_or_default()).into_owned(),
        Err(status) => {
            let _ = rampart_abi::log(
                LogLevel::Error,
                &format!("floor: cannot read the configuration: {status:?}"),
            );
            return false;
        }
    };
    let ops = match parse_ops(&text) {
        Ok(ops) => ops,
        Err(message) => {
            let _ = rampart_abi::log(LogLevel::Error, &message);
            return false;
        }
    };
    let counter = if ops.iter().any(|op| matches!(op, Op::Increment(_))) {
        match rampart_abi::define_metric(MetricType::Counter, COUNTER) {
            Ok(id) => id,
            Err(status) => {
                let _ = rampart_abi::log(
                    LogLevel::Error,
                    &format!("floor: cannot define {COUNTER}: {status:?}"),
                );
                return false;
            }
        }
    } else {
        0
    };
    let calls = ops.len();
    STATE.with(|state| {
        let mut state = state.borrow_mut();
        state.roots.retain(|r| r.id != root_context);
        state.roots.push(Root {
            id: root_context,
            ops,
            counter,
        });
    });
    let _ = rampart_abi::log(
        LogLevel::Info,
        &format!("floor: {calls} host call(s) per request"),
    );
    true
}

/// Remembers a request context's root, only when the VM holds several roots.
#[no_mangle]
pub extern "C" fn proxy_on_context_create(context: u32, root_context: u32) {
    if root_context == 0 {
        return;
    }
    STATE.with(|state| {
        let mut state = state.borrow_mut();
        if state.roots.len() > 1 {
            state.contexts.push((context, root_context));
        }
    });
}

/// Makes the root's calls in order and continues. Statuses are ignored: the floor
/// decides nothing, and the harness checks the effects (route, counter) instead.
#[no_mangle]
pub extern "C" fn proxy_on_request_headers(
    context: u32,
    _num_headers: usize,
    _end_of_stream: bool,
) -> u32 {
    STATE.with(|state| {
        let state = state.borrow();
        if let Some(root) = state.root_of(context) {
            for op in &root.ops {
                run(op, root.counter);
            }
        }
    });
    0
}

fn run(op: &Op, counter: u32) {
    match op {
        Op::Pairs => {
            if let Ok(Some(bytes)) = rampart_abi::header_map_pairs(MapType::RequestHeaders) {
                // Walk every entry, as a filter that looks for its inputs must, so the
                // cost of reading the map is in the floor and not only its transfer.
                let touched = rampart_abi::HeaderMap::parse(&bytes).map_or(0, |map| {
                    map.iter()
                        .map(|(name, value)| name.len() + value.len())
                        .sum::<usize>()
                });
                black_box(touched);
            }
        }
        Op::Property(path) => {
            black_box(rampart_abi::property(path).ok());
        }
        Op::Replace { name, value } => {
            let _ = rampart_abi::replace_header_map_value(MapType::RequestHeaders, name, value);
        }
        Op::Increment(times) => {
            for _ in 0..*times {
                let _ = rampart_abi::increment_metric(counter, 1);
            }
        }
        Op::FilterState { name, value } => {
            let _ = rampart_abi::set_property(name, value);
        }
    }
}

/// Forgets a request context, or a root and its list.
#[no_mangle]
pub extern "C" fn proxy_on_delete(context: u32) {
    STATE.with(|state| {
        let mut state = state.borrow_mut();
        if let Some(at) = state.contexts.iter().position(|(c, _)| *c == context) {
            state.contexts.swap_remove(at);
        } else {
            state.roots.retain(|r| r.id != context);
        }
    });
}

/// Exported because Rampart exports it; the floor never asks for a tick.
#[no_mangle]
pub extern "C" fn proxy_on_tick(_root_context: u32) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_list_parses_in_order() {
        let ops = parse_ops(
            "# the bench list\n\
             pairs\n\
             \n\
             property metadata.filter_metadata.tenant.tier\n\
             replace x-rampart-route stable\n\
             increment 3\n\
             filter_state rampart.decision route=stable reason=match\n",
        )
        .unwrap();
        assert_eq!(
            ops,
            vec![
                Op::Pairs,
                Op::Property(b"metadata\0filter_metadata\0tenant\0tier".to_vec()),
                Op::Replace {
                    name: "x-rampart-route".into(),
                    value: b"stable".to_vec()
                },
                Op::Increment(3),
                Op::FilterState {
                    name: b"rampart.decision".to_vec(),
                    value: b"route=stable reason=match".to_vec()
                },
            ]
        );
    }

    #[test]
    fn an_empty_configuration_makes_no_call() {
        assert_eq!(parse_ops(""), Ok(vec![]));
        assert_eq!(parse_ops("  \n# nothing\n"), Ok(vec![]));
    }

    #[test]
    fn mistakes_are_refused_with_their_line() {
        for bad in [
            "pairs now",
            "property",
            "property a b",
            "replace x-only-name",
            "increment 0",
            "increment x",
            "filter_state",
            "read headers",
        ] {
            let err = parse_ops(&format!("pairs\n{bad}")).unwrap_err();
            assert!(err.contains("line 2"), "{bad}: {err}");
        }
    }

    #[test]
    fn requests_find_their_root_when_a_vm_holds_several() {
        let root = |id, times| Root {
            id,
            ops: vec![Op::Increment(times)],
            counter: 0,
        };
        let mut state = State {
            roots: vec![root(1, 1)],
            contexts: vec![],
        };
        // One root: every context is its own, with no bookkeeping.
        assert_eq!(state.root_of(7).map(|r| r.id), Some(1));
        state.roots.push(root(2, 2));
        state.contexts.push((8, 2));
        assert_eq!(state.root_of(8).map(|r| r.id), Some(2));
        assert!(state.root_of(9).is_none());
    }
}
