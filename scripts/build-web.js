#!/usr/bin/env node
/**
 * Builds the chat page and the operations view into web/dist: esbuild (pinned in package.json) bundles
 * web/src/{chat,ops}/main.ts with socket.io-client into one file each; the static files are copied as
 * they are. Type checking is `tsc -p web/tsconfig.json`, run before this by `npm run build`.
 * Nothing is fetched: every byte the pages load comes from this build, served by the front.
 */
'use strict';
const fs = require('node:fs');
const path = require('node:path');
const esbuild = require('esbuild');

const root = path.resolve(__dirname, '..');
const out = path.join(root, 'web/dist');
const assets = path.join(out, 'assets');
const staticDir = path.join(root, 'web/static');

async function main() {
  fs.rmSync(out, { recursive: true, force: true });
  fs.mkdirSync(assets, { recursive: true });
  const result = await esbuild.build({
    entryPoints: { chat: path.join(root, 'web/src/chat/main.ts'), ops: path.join(root, 'web/src/ops/main.ts') },
    outdir: assets,
    bundle: true,
    format: 'iife',
    platform: 'browser',
    target: ['es2020', 'chrome100', 'firefox100', 'safari15'],
    minify: true,
    sourcemap: 'linked',
    legalComments: 'linked',
    logLevel: 'warning',
    metafile: true,
  });
  // The pages must not reach for Node: a module of node's own in the bundle means a wrong import.
  const nodeOnly = Object.keys(result.metafile.inputs).filter((f) => f.startsWith('node:'));
  if (nodeOnly.length) throw new Error(`the web bundle imports Node modules: ${nodeOnly.join(', ')}`);
  for (const file of fs.readdirSync(staticDir)) {
    const target = file.endsWith('.html') ? out : assets;
    fs.copyFileSync(path.join(staticDir, file), path.join(target, file));
  }
  const sizes = fs.readdirSync(assets).filter((f) => f.endsWith('.js')).map((f) => `${f} ${(fs.statSync(path.join(assets, f)).size / 1024).toFixed(1)} KiB`);
  process.stdout.write(`web: built ${path.relative(root, out)} (${sizes.join(', ')})\n`);
}

main().catch((err) => {
  process.stderr.write(`web build failed: ${err.stack ?? err}\n`);
  process.exit(1);
});
