// A JavaScript gateway routing with the Rampart component, transpiled by
// `jco transpile rampart_component.wasm -o rampart`.
import { readFileSync } from 'node:fs';
import { engine } from './rampart/rampart.js';

// Load once: the contract is validated and compiled a single time.
const contract = engine.Contract.load(
  readFileSync(new URL('../../examples/contract.json', import.meta.url), 'utf8'),
);

/** Decides for a request: reads each input where the contract says it is carried. */
export function route(headers, properties) {
  const read = (source) =>
    source.tag === 'header' ? headers[source.val] : properties[source.val.join('.')];
  const inputs = contract
    .inputs()
    .filter((input) => read(input.source) !== undefined)
    .map((input) => ({ name: input.name, value: { tag: 'text', val: read(input.source) } }));
  const key = read(contract.sticky());
  return contract.decide(inputs, key === undefined ? undefined : { tag: 'text', val: key });
}

const decision = route(
  {
    'x-user-id': 'alice',
    'x-user-config': '{"currency":"EUR","checkout_v2":true,"max_items":50}',
  },
  {
    'xds.node.metadata.CONFIG_REV': 'r42',
    'metadata.filter_metadata.tenant.tier': 'gold',
  },
);
console.log(decision.summary); // route=canary reason=match bucket=2815
