//! Rampart's Envoy HTTP filter (proxy-wasm ABI 0.2.1).
//!
//! The module exports only the callbacks it needs: Envoy calls every exported
//! `proxy_on_*` callback on every request, and each call is a crossing into the VM, so
//! a filter that exported them all (as the SDK's dispatcher does) would pay for
//! response, body, log and done callbacks it never uses. Exported:
//!
//! * `proxy_on_vm_start`, `proxy_on_configure`, `proxy_on_tick` (counts to Envoy,
//!   the drift pause) — per VM or configuration;
//! * `proxy_on_context_create` — ties a request to its configuration (several
//!   configurations can share one VM);
//! * `proxy_on_request_headers` — the decision;
//! * `proxy_on_delete` — frees a finished configuration (flushing its counts) or a
//!   request that never reached its headers.
//!
//! plus `malloc` and the ABI marker from [`rampart_abi`]. The per-request logic lives in
//! [`filter`] over the [`host::Host`] trait and is unit-tested natively; an invalid
//! contract puts the filter in safe mode (every request to stable, an error log and
//! `rampart.invalid_config`), never a trap.

mod filter;
mod host;
mod metrics;
#[cfg(feature = "vm-bench")]
mod vm_bench;

use std::cell::RefCell;
use std::rc::Rc;

use filter::{write_route_header, State};
use host::{Envoy, Host};
use rampart_abi::LogLevel;

/// The configurations and unfinished requests of one VM (one per worker).
#[derive(Default)]
struct Vm {
    /// Root contexts (one per configuration) and their state.
    roots: Vec<(u32, Rc<State>)>,
    /// Requests created but not yet at their request headers, with the state of the
    /// configuration they were created under. Context ids only grow, so this stays
    /// sorted by id.
    streams: Vec<(u32, Rc<State>)>,
}

impl Vm {
    fn root(&self, id: u32) -> Option<&Rc<State>> {
        self.roots.iter().find(|(r, _)| *r == id).map(|(_, s)| s)
    }

    /// A new context: a configuration (`root == 0`) or a request of configuration `root`.
    fn create(&mut self, id: u32, root: u32) {
        if root == 0 {
            self.roots.push((id, Rc::new(State::unconfigured())));
            return;
        }
        let state = match self.root(root) {
            Some(state) => Rc::clone(state),
            None => Rc::new(State::unconfigured()),
        };
        match self.streams.last() {
            Some((last, _)) if *last >= id => {
                let at = self.streams.partition_point(|(s, _)| *s < id);
                self.streams.insert(at, (id, state));
            }
            _ => self.streams.push((id, state)),
        }
    }

    /// Replaces a configuration's state; returns the one replaced, if any.
    fn configure(&mut self, root: u32, state: State) -> Option<Rc<State>> {
        let state = Rc::new(state);
        match self.roots.iter_mut().find(|(r, _)| *r == root) {
            Some((_, slot)) => Some(std::mem::replace(slot, state)),
            None => {
                self.roots.push((root, state));
                None
            }
        }
    }

    /// The state a request decides with; it needs no bookkeeping after this.
    fn take_stream(&mut self, id: u32) -> Option<Rc<State>> {
        let at = self.streams.binary_search_by_key(&id, |(s, _)| *s).ok()?;
        Some(self.streams.remove(at).1)
    }

    /// A finished context: a request that never reached its headers, or a
    /// configuration that is gone (returned, so its last counts can be flushed).
    fn delete(&mut self, id: u32) -> Option<Rc<State>> {
        if let Ok(at) = self.streams.binary_search_by_key(&id, |(s, _)| *s) {
            self.streams.remove(at);
            return None;
        }
        let at = self.roots.iter().position(|(r, _)| *r == id)?;
        Some(self.roots.remove(at).1)
    }

    /// The state for a request whose context was not seen being created: the only
    /// configuration, or none.
    fn fallback(&self) -> Option<Rc<State>> {
        match self.roots.as_slice() {
            [(_, state)] => Some(Rc::clone(state)),
            _ => None,
        }
    }
}

thread_local! {
    static VM: RefCell<Vm> = RefCell::new(Vm::default());
}

/// Runs `f` on the VM's bookkeeping; `None` if it is in use (a host never re-enters a
/// callback, so that would be a bug — and never a panic).
fn with_vm<T>(f: impl FnOnce(&mut Vm) -> T) -> Option<T> {
    VM.with(|vm| vm.try_borrow_mut().ok().map(|mut vm| f(&mut vm)))
}

/// Called once per VM: says what runs.
#[no_mangle]
pub extern "C" fn proxy_on_vm_start(_root: u32, _vm_configuration_size: usize) -> bool {
    Envoy.log(
        LogLevel::Info,
        &format!(
            "rampart filter {} ({}) started",
            env!("CARGO_PKG_VERSION"),
            option_env!("RAMPART_GIT_SHA").unwrap_or("unknown commit")
        ),
    );
    true
}

/// Called once per configuration (and again if it is replaced on the same root).
#[no_mangle]
pub extern "C" fn proxy_on_configure(root: u32, _plugin_configuration_size: usize) -> bool {
    let state = State::configure(&mut Envoy);
    if let Some(Some(old)) = with_vm(|vm| vm.configure(root, state)) {
        old.flush(&mut Envoy);
    }
    true
}

/// Called for every new context, configurations and requests alike.
#[no_mangle]
pub extern "C" fn proxy_on_context_create(id: u32, root: u32) {
    with_vm(|vm| vm.create(id, root));
}

/// The request path.
#[no_mangle]
pub extern "C" fn proxy_on_request_headers(id: u32, _headers: usize, _end_of_stream: bool) -> u32 {
    let state = with_vm(|vm| vm.take_stream(id).or_else(|| vm.fallback())).flatten();
    let action = match state {
        Some(state) => state.on_request_headers(&mut Envoy),
        // No configuration to decide with: the default route header to stable.
        None => {
            let fallback = State::unconfigured();
            let (header, value) = fallback.stable_route();
            write_route_header(&mut Envoy, "rampart", header, value)
        }
    };
    action as u32
}

/// Called when a context is done with, requests and configurations alike. A deleted
/// configuration hands its last counts to Envoy.
#[no_mangle]
pub extern "C" fn proxy_on_delete(id: u32) {
    if let Some(Some(state)) = with_vm(|vm| vm.delete(id)) {
        state.flush(&mut Envoy);
    }
}

/// Per configuration, every [`metrics::FLUSH_MS`] at most: counts to Envoy, the drift
/// pause's merge.
#[no_mangle]
pub extern "C" fn proxy_on_tick(root: u32) {
    if let Some(Some(state)) = with_vm(|vm| vm.root(root).cloned()) {
        state.on_tick(&mut Envoy);
    }
}

#[cfg(test)]
mod tests;
