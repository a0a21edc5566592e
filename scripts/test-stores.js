#!/usr/bin/env node
// npm test: jest once per store, one after the other (jest.config.js says which files each pass runs).
// Usage: node scripts/test-stores.js <store>... [jest arguments]
//   stores: sqlite, postgresql (npm test: both; npm run test:sqlite / test:postgresql: one).
//   Jest arguments go to every pass, e.g. `npm test -- dist/tests/spine.test.js` runs that file on each store;
//   a pass whose files none match is skipped (--passWithNoTests), so `npm test -- unit` runs the unit tests once.
// Every pass runs even when an earlier one failed; the exit code is 1 if any failed, and the last lines say which.
'use strict';
const { spawnSync } = require('node:child_process');
const path = require('node:path');

const STORES = ['sqlite', 'postgresql'];
const args = process.argv.slice(2);
const stores = [];
while (args.length > 0 && STORES.includes(args[0])) stores.push(args.shift());
if (stores.length === 0) {
  console.error(`usage: node scripts/test-stores.js <${STORES.join('|')}>... [jest arguments]`);
  process.exit(2);
}

const jest = require.resolve('jest/bin/jest');
const results = [];
for (const store of stores) {
  console.log(`\n=== tests on ${store} (ATOLL_TEST_DATABASE=${store}) ===\n`);
  const started = Date.now();
  const run = spawnSync(process.execPath, [jest, '--passWithNoTests', ...args], {
    cwd: path.resolve(__dirname, '..'),
    stdio: 'inherit',
    env: { ...process.env, ATOLL_TEST_DATABASE: store },
  });
  const seconds = Math.round((Date.now() - started) / 1000);
  const ok = run.status === 0;
  results.push({ store, ok, seconds, how: run.signal ? `killed by ${run.signal}` : `exit ${run.status}` });
}

console.log('');
for (const r of results) console.log(`${r.ok ? 'passed' : 'FAILED'}: tests on ${r.store} (${r.seconds} s${r.ok ? '' : `, ${r.how}`})`);
const failed = results.filter((r) => !r.ok).map((r) => r.store);
if (failed.length > 0) {
  console.log(`the tests failed on ${failed.join(' and ')}`);
  process.exit(1);
}
