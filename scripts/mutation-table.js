#!/usr/bin/env node
// Prints the per-module table of the last `npm run mutate` (reports/mutation/mutation.json) as Markdown,
// and fails when a module scores under the goal: Stryker's own `break` threshold only checks the total.
'use strict';
const fs = require('node:fs');
const path = require('node:path');

const GOAL = 80;
const report = JSON.parse(fs.readFileSync(path.join(__dirname, '..', 'reports', 'mutation', 'mutation.json'), 'utf8'));
const rows = [];
let below = 0;
for (const [file, { mutants }] of Object.entries(report.files).sort(([a], [b]) => a.localeCompare(b))) {
  const n = (status) => mutants.filter((m) => m.status === status).length;
  const killed = n('Killed');
  const timeout = n('Timeout');
  const survived = n('Survived');
  const noCoverage = n('NoCoverage');
  // Stryker's mutation score: detected (killed or timed out) over valid mutants (compile errors excluded).
  const valid = killed + timeout + survived + noCoverage;
  const score = valid === 0 ? 100 : (100 * (killed + timeout)) / valid;
  if (score < GOAL) below++;
  rows.push(`| ${file} | ${score.toFixed(2)} | ${killed} | ${survived} | ${noCoverage} | ${timeout} |`);
}
console.log('| module | score % | killed | survived | no coverage | timeout |');
console.log('| --- | ---: | ---: | ---: | ---: | ---: |');
for (const row of rows) console.log(row);
if (below > 0) {
  console.error(`${below} module(s) under the ${GOAL}% mutation score goal`);
  process.exit(1);
}
