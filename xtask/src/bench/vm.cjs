// `cargo xtask bench --vm`: times Rampart's per-request path in V8 (Node's), without
// Envoy. Written out and run by xtask/src/bench/vm.rs; see crates/filter/src/vm_bench.rs.
//
// node vm.cjs <module.wasm> <rounds> <requests per round> <id>=<scenario file>...
//
// Each scenario gets its own instance of the module; the rounds interleave them, after
// a warm-up, so a slow spell of the machine falls on all of them. Prints one JSON
// object: per scenario, the nanoseconds per request of each round and the requests
// of the last round that went to the canary.
'use strict';
const fs = require('fs');

const [wasmPath, rounds, requests, ...specs] = process.argv.slice(2);
const compiled = new WebAssembly.Module(fs.readFileSync(wasmPath));
// The bench entry points never call into the host; the imports only have to exist.
const imports = {};
for (const { module: from, name, kind } of WebAssembly.Module.imports(compiled)) {
  if (kind === 'function') {
    (imports[from] ??= {})[name] = () => { throw new Error(`host call ${name} in the bench`); };
  }
}

const scenarios = specs.map((spec) => {
  const at = spec.indexOf('=');
  const id = spec.slice(0, at);
  const bytes = fs.readFileSync(spec.slice(at + 1));
  const vm = new WebAssembly.Instance(compiled, imports).exports;
  const ptr = vm.malloc(bytes.length);
  new Uint8Array(vm.memory.buffer, ptr, bytes.length).set(bytes);
  const loaded = vm.rampart_vm_bench_load(ptr, bytes.length);
  if (loaded !== 1) {
    throw new Error(`${id}: the module did not accept the scenario (${loaded}: 0 safe mode, -1 malformed)`);
  }
  // Warm-up: V8 compiles the hot functions, the digest cache fills.
  vm.rampart_vm_bench_run(Number(requests));
  return { id, vm, ns: [], canary: 0 };
});

for (let round = 0; round < Number(rounds); round++) {
  for (const s of scenarios) {
    const start = process.hrtime.bigint();
    s.canary = s.vm.rampart_vm_bench_run(Number(requests));
    s.ns.push(Number(process.hrtime.bigint() - start) / Number(requests));
  }
}

const out = { v8: process.versions.v8, node: process.version, requests: Number(requests), scenarios: {} };
for (const s of scenarios) out.scenarios[s.id] = { ns_per_request: s.ns, canary: s.canary };
console.log(JSON.stringify(out));
