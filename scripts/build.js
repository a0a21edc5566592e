#!/usr/bin/env node
/**
 * `npm run build` (and the first step of `npm start` and `npm run db:migrate`): the Prisma clients, the server's
 * TypeScript into dist/, the web pages into web/dist/. Each step runs only when its inputs changed since it last
 * succeeded: the SHA-256 of the inputs' paths and contents is kept beside the step's output (`.build-inputs`), so
 * a built tree starts at once, and removing an output (`rm -rf dist`) rebuilds it.
 *
 * Hashes rather than modification times: a `git checkout` or a copy changes times without changing anything.
 * Our own check rather than `tsc -b`'s: loading TypeScript to learn that nothing changed costs about a second,
 * hashing the few hundred inputs about 50 ms; when the server's sources did change, tsc still compiles
 * incrementally (tsconfig.json's tsBuildInfo).
 *
 *   node scripts/build.js           build what is stale
 *   node scripts/build.js --check   build nothing; exit 1 and name the stale steps if any
 */
'use strict';
const crypto = require('node:crypto');
const fs = require('node:fs');
const path = require('node:path');
const { spawnSync } = require('node:child_process');

const ROOT = path.resolve(__dirname, '..');
const STAMP = '.build-inputs';

/**
 * What each step reads and where it writes. `inputs` are files, or folders (`dir`, every file below it whose
 * name ends with one of `ext`, all files when `ext` is absent). The lock file stands for the versions of the
 * tools and types every step uses.
 */
const STEPS = [
  {
    name: 'prisma',
    what: 'Prisma clients',
    inputs: [
      'prisma/models.prisma',
      { dir: 'prisma/sqlite', ext: ['.prisma'], skip: ['migrations'] },
      { dir: 'prisma/postgresql', ext: ['.prisma'], skip: ['migrations'] },
      'scripts/prisma-generate.js',
      'package-lock.json',
    ],
    output: 'prisma/generated',
    run: [['node', 'scripts/prisma-generate.js']],
  },
  {
    name: 'server',
    what: 'server (tsc)',
    inputs: [
      'tsconfig.json',
      'tsconfig.agent.json',
      ...['protocol', 'server', 'workers', 'prisma/generated', 'tests', 'scripts'].map((dir) => ({ dir, ext: ['.ts'] })),
      'package-lock.json',
    ],
    output: 'dist',
    run: [
      ['node', 'node_modules/typescript/bin/tsc', '-p', 'tsconfig.json'],
      // The agent contract's declarations (dist/types/), for `import type { Agent } from 'atoll/agent'`.
      ['node', 'node_modules/typescript/bin/tsc', '-p', 'tsconfig.agent.json'],
    ],
  },
  {
    name: 'web',
    what: 'web pages',
    inputs: [{ dir: 'web/src' }, { dir: 'web/static' }, 'web/tsconfig.json', 'scripts/build-web.js', 'package-lock.json'],
    output: 'web/dist',
    run: [
      ['node', 'node_modules/typescript/bin/tsc', '-p', 'web/tsconfig.json'],
      ['node', 'scripts/build-web.js'],
    ],
  },
];

function filesOf(root, input) {
  if (typeof input === 'string') return [input];
  const found = [];
  const walk = (rel) => {
    let entries;
    try {
      entries = fs.readdirSync(path.join(root, rel), { withFileTypes: true });
    } catch {
      return; // absent: hashed as absent
    }
    for (const e of entries) {
      const child = path.posix.join(rel, e.name);
      if (e.isDirectory()) {
        if (!(input.skip ?? []).includes(e.name)) walk(child);
      } else if (!input.ext || input.ext.some((x) => e.name.endsWith(x))) {
        found.push(child);
      }
    }
  };
  walk(input.dir);
  return found;
}

/** The hash of a step's inputs as they are now in `root`. */
function inputsHash(root, step) {
  const hash = crypto.createHash('sha256');
  const files = [...new Set(step.inputs.flatMap((input) => filesOf(root, input)))].sort();
  for (const file of files) {
    hash.update(`${file}\0`);
    try {
      hash.update(fs.readFileSync(path.join(root, file)));
    } catch {
      hash.update('\0absent\0');
    }
  }
  return hash.digest('hex');
}

function stampOf(root, step) {
  try {
    return fs.readFileSync(path.join(root, step.output, STAMP), 'utf8').trim();
  } catch {
    return null;
  }
}

/** The steps whose output is missing or older than their inputs, in build order, each with its inputs' hash. */
function staleSteps(root = ROOT, steps = STEPS) {
  return steps.map((step) => ({ step, hash: inputsHash(root, step) })).filter(({ step, hash }) => stampOf(root, step) !== hash);
}

/**
 * A tree with the build's outputs and none of its sources (the container image: README "Docker") has nothing
 * to build.
 */
function isBuiltOnly(root) {
  return !fs.existsSync(path.join(root, 'tsconfig.json')) && fs.existsSync(path.join(root, 'dist/server/main.js'));
}

/** Builds what is stale; returns the names of the steps it ran. Exits the process when a step fails. */
function build(root = ROOT, say = (line) => process.stderr.write(`${line}\n`)) {
  if (isBuiltOnly(root)) {
    say('build: a built tree without sources (the container image): nothing to build');
    return [];
  }
  const ran = [];
  // One at a time: a step's inputs may be an earlier step's output (the server compiles the Prisma clients).
  for (const step of STEPS) {
    const hash = inputsHash(root, step);
    if (stampOf(root, step) === hash) continue;
    for (const [command, ...args] of step.run) {
      const result = spawnSync(command === 'node' ? process.execPath : command, args, { cwd: root, stdio: 'inherit' });
      if (result.status !== 0) {
        say(`build: ${step.what} failed (${[command, ...args].join(' ')})`);
        process.exit(result.status ?? 1);
      }
    }
    fs.mkdirSync(path.join(root, step.output), { recursive: true });
    // The hash of the inputs as they were when the step started: an edit made meanwhile is built next time.
    fs.writeFileSync(path.join(root, step.output, STAMP), `${hash}\n`);
    ran.push(step.name);
  }
  say(ran.length ? `build: built ${ran.join(', ')}` : `build: up to date (${STEPS.map((s) => s.what).join(', ')})`);
  return ran;
}

module.exports = { build, staleSteps, STEPS };

if (require.main === module) {
  if (process.argv.includes('--check')) {
    const stale = isBuiltOnly(ROOT) ? [] : staleSteps();
    if (stale.length) {
      process.stderr.write(`build: stale: ${stale.map(({ step }) => step.name).join(', ')} (run npm run build)\n`);
      process.exit(1);
    }
    process.stderr.write('build: up to date\n');
  } else {
    build();
  }
}
