// The Rampart component from Node, through jco: the same digests and decisions as
// the core, over the shared vectors. `cargo xtask test` transpiles the component into
// ./rampart before running `node --test` here.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

import { engine } from './rampart/rampart.js';
import { route } from './gateway.js';

const repo = (rel) => fileURLToPath(new URL(`../../${rel}`, import.meta.url));
const readText = (rel) => readFileSync(repo(rel), 'utf8');
const readJson = (rel) => JSON.parse(readText(rel));

/** jco reports a WIT `result` error by throwing it with the error as `payload`. */
function failure(fn) {
  try {
    fn();
  } catch (e) {
    assert.ok(e.payload, `expected a typed error, got ${e}`);
    return e.payload;
  }
  assert.fail('expected an error');
}

test('RFC 8785 vectors: canonical form and digest', () => {
  const names = readdirSync(repo('tests/vectors/jcs/input')).sort();
  assert.ok(names.length >= 6);
  for (const name of names) {
    const input = readText(`tests/vectors/jcs/input/${name}`);
    const output = readFileSync(repo(`tests/vectors/jcs/output/${name}`));
    assert.equal(engine.canonicalJson(input), output.toString('utf8'), name);
    const sha = createHash('sha256').update(output).digest('hex');
    assert.equal(engine.digest(input), `sha256:${sha}`, name);
  }
});

test('numbers are written as JavaScript writes them', () => {
  const { cases } = readJson('tests/vectors/numbers.json');
  assert.ok(cases.length > 100);
  const view = new DataView(new ArrayBuffer(8));
  for (const [hex, text] of cases) {
    view.setBigUint64(0, BigInt(`0x${hex}`));
    const value = view.getFloat64(0);
    assert.equal(engine.canonicalJson(value.toExponential()), text, hex);
    assert.equal(engine.canonicalJson(text), JSON.stringify(value), hex);
  }
});

test('snapshot digests equal the example contract lock (written by the CLI)', () => {
  const snapshot = readJson('examples/snapshot.json');
  const { lock } = readJson('examples/contract.json');
  assert.equal(engine.digest(JSON.stringify(snapshot)), lock.digest);
  for (const [name, value] of Object.entries(snapshot)) {
    assert.equal(engine.digest(JSON.stringify(value)), lock.fields[name], name);
  }
});

test('JSON errors are typed', () => {
  assert.equal(failure(() => engine.digest('{"a":1,"a":2}')).tag, 'invalid');
  assert.deepEqual(failure(() => engine.digest('['.repeat(129) + ']'.repeat(129))), {
    tag: 'too-deep',
    val: 128,
  });
});

test('shared decision vectors, through the documented gateway example', () => {
  const doc = readJson('tests/vectors/decisions.json');
  assert.ok(doc.cases.length >= 15);
  for (const c of doc.cases) {
    const properties = {};
    for (const [namespace, keys] of Object.entries(c.metadata ?? {})) {
      for (const [key, value] of Object.entries(keys)) {
        properties[`metadata.filter_metadata.${namespace}.${key}`] = value;
      }
    }
    for (const [key, value] of Object.entries(c.node_metadata ?? doc.node_metadata)) {
      properties[`xds.node.metadata.${key}`] = value;
    }
    const d = route(c.headers, properties);
    assert.equal(d.side, c.expect.route, c.name);
    assert.equal(d.reason, c.expect.reason, c.name);
    assert.deepEqual(d.fields, c.expect.fields, c.name);
    if ('bucket' in c.expect) assert.equal(d.bucket, c.expect.bucket, c.name);
    // The summary is the filter's debug header, word for word.
    assert.ok(d.summary.startsWith(`route=${c.expect.route} reason=${c.expect.reason}`));
    if (d.reason === 'match') assert.equal(d.driftReport, '');
    else if (d.reason === 'drift') assert.match(d.driftReport, /=drift\(observed sha256:|=invalid\(/);
  }
});

test('binary property encodings and the contract surface', () => {
  const contract = engine.Contract.load(readText('examples/contract.json'));
  assert.equal(contract.name(), 'checkout-v2');
  assert.equal(contract.percent(), 30);
  assert.deepEqual(contract.sticky(), { tag: 'header', val: 'x-user-id' });
  assert.deepEqual(
    contract.inputs().map((i) => [i.name, i.source.tag, i.format]),
    [
      ['flags', 'header', 'json'],
      ['rev', 'property', 'string'],
      ['tier', 'property', 'string'],
    ],
  );
  const text = (val) => ({ tag: 'text', val });
  const inputs = [
    { name: 'flags', value: text('{"checkout_v2":true,"currency":"EUR","max_items":50}') },
    { name: 'rev', value: text('r42') },
    { name: 'tier', value: { tag: 'bytes', val: new TextEncoder().encode('gold') } },
  ];
  assert.equal(contract.decide(inputs, text('alice')).summary, 'route=canary reason=match bucket=2815');
  const invalid = [...inputs.slice(0, 2), { name: 'tier', value: { tag: 'bytes', val: new Uint8Array([0xff]) } }];
  const d = contract.decide(invalid, text('alice'));
  assert.deepEqual([d.side, d.reason, d.fields, d.bucket], ['stable', 'drift', ['tier'], undefined]);
  assert.equal(d.driftReport, 'tier=invalid(invalid_utf8)');
  assert.deepEqual(failure(() => contract.decide([{ name: 'colour', value: text('red') }])), {
    tag: 'unknown-input',
    val: 'colour',
  });
});

test('contract errors name the field', () => {
  const example = readJson('examples/contract.json');
  example.ramp.percent = 101;
  const e = failure(() => engine.Contract.load(JSON.stringify(example)));
  assert.equal(e.tag, 'field');
  assert.equal(e.val.field, 'ramp.percent');
  assert.match(e.val.message, /between 0 and 100/);
  assert.equal(failure(() => engine.Contract.load('')).tag, 'document');
});

test('docs/component.md shows the gateway example as it is tested', () => {
  const example = readFileSync(new URL('./gateway.js', import.meta.url), 'utf8');
  assert.ok(
    readText('docs/component.md').includes(example),
    'docs/component.md lacks tests/js/gateway.js verbatim',
  );
  const out = execFileSync(process.execPath, [fileURLToPath(new URL('./gateway.js', import.meta.url))]);
  assert.equal(out.toString(), 'route=canary reason=match bucket=2815\n');
});
