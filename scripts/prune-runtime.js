#!/usr/bin/env node
/**
 * After `npm prune --omit=dev`, removes from <dir>/node_modules what the server can never load, for the container
 * image's runtime stage (Dockerfile):
 * - packages no production package needs. npm keeps a production package's *optional* peer dependencies when
 *   they are installed (here as our devDependencies): @prisma/client lists `prisma` and `typescript`, and the
 *   Prisma CLI brings Prisma Studio, PGlite, effect… (about 250 MiB the server never requires). Kept: what the
 *   package.json's dependencies reach through `dependencies`, `optionalDependencies` and required (not optional)
 *   `peerDependencies`, resolved the way Node resolves them.
 * - native addons' build leftovers (better-sqlite3 compiled from source): their C/C++ sources and object files.
 *   Only `build/Release/*.node` is loaded.
 * npm has no switch for either (`--omit=peer` leaves optional peers that a dev dependency installed).
 *
 *   node scripts/prune-runtime.js [dir]     (default: the current directory)
 */
'use strict';
const fs = require('node:fs');
const path = require('node:path');

const readJson = (file) => JSON.parse(fs.readFileSync(file, 'utf8'));

/** The folder of package `name` as `from` would load it: node_modules of `from` and of each folder above it. */
function resolvePackage(root, from, name) {
  for (let dir = from; ; dir = path.dirname(dir)) {
    const candidate = path.join(dir, 'node_modules', name);
    if (fs.existsSync(path.join(candidate, 'package.json'))) return candidate;
    if (dir === root || dir === path.dirname(dir)) return null;
  }
}

function requiredNames(pkg) {
  const optionalPeers = pkg.peerDependenciesMeta ?? {};
  const peers = Object.keys(pkg.peerDependencies ?? {}).filter((n) => !optionalPeers[n]?.optional);
  return [...Object.keys(pkg.dependencies ?? {}), ...Object.keys(pkg.optionalDependencies ?? {}), ...peers];
}

/** Every package folder the root's production dependencies reach. */
function reachable(root) {
  const keep = new Set();
  const visit = (dir) => {
    for (const name of requiredNames(readJson(path.join(dir, 'package.json')))) {
      const found = resolvePackage(root, dir, name);
      if (found && !keep.has(found)) {
        keep.add(found);
        visit(found);
      }
    }
  };
  visit(root);
  return keep;
}

/** Package folders under a node_modules folder (scoped ones included), each with its own nested node_modules. */
function packagesIn(modules) {
  if (!fs.existsSync(modules)) return [];
  const found = [];
  for (const entry of fs.readdirSync(modules, { withFileTypes: true })) {
    if (entry.name.startsWith('.') || !entry.isDirectory()) continue;
    const dir = path.join(modules, entry.name);
    if (entry.name.startsWith('@')) {
      for (const scoped of fs.readdirSync(dir, { withFileTypes: true })) if (scoped.isDirectory()) found.push(path.join(dir, scoped.name));
    } else {
      found.push(dir);
    }
  }
  return found;
}

/** Keeps a native addon's loadable binaries, removes its sources and object files. */
function pruneNativeBuild(dir) {
  if (!fs.existsSync(path.join(dir, 'binding.gyp'))) return;
  for (const leftover of ['deps', 'src']) fs.rmSync(path.join(dir, leftover), { recursive: true, force: true });
  const build = path.join(dir, 'build');
  if (!fs.existsSync(build)) return;
  for (const entry of fs.readdirSync(build)) if (entry !== 'Release') fs.rmSync(path.join(build, entry), { recursive: true, force: true });
  const release = path.join(build, 'Release');
  for (const entry of fs.readdirSync(release, { withFileTypes: true })) {
    if (!(entry.isFile() && entry.name.endsWith('.node'))) fs.rmSync(path.join(release, entry.name), { recursive: true, force: true });
  }
}

function pruneRuntime(root) {
  const keep = reachable(root);
  let removed = 0;
  const sweep = (modules) => {
    for (const dir of packagesIn(modules)) {
      if (keep.has(dir)) {
        pruneNativeBuild(dir);
        sweep(path.join(dir, 'node_modules'));
      } else {
        fs.rmSync(dir, { recursive: true, force: true });
        removed++;
      }
    }
    // Empty scope folders and links of removed commands.
    if (!fs.existsSync(modules)) return;
    for (const entry of fs.readdirSync(modules)) {
      const dir = path.join(modules, entry);
      if (entry.startsWith('@') && fs.readdirSync(dir).length === 0) fs.rmdirSync(dir);
    }
    const bin = path.join(modules, '.bin');
    if (fs.existsSync(bin)) for (const link of fs.readdirSync(bin)) if (!fs.existsSync(path.join(bin, link))) fs.rmSync(path.join(bin, link));
  };
  sweep(path.join(root, 'node_modules'));
  // npm's record of the tree as installed: now wrong, and npm reads the folders when it is absent.
  fs.rmSync(path.join(root, 'node_modules/.package-lock.json'), { force: true });
  return { kept: keep.size, removed };
}

module.exports = { pruneRuntime, reachable };

if (require.main === module) {
  const { kept, removed } = pruneRuntime(path.resolve(process.argv[2] ?? '.'));
  process.stdout.write(`prune-runtime: kept ${kept} packages, removed ${removed} the server never loads, and native build leftovers\n`);
}
