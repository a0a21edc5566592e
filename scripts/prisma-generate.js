#!/usr/bin/env node
// `prisma generate` only needs the schema parser (WebAssembly), but the CLI insists on finding a native
// schema engine first and tries to download it, which fails offline. Pointing PRISMA_SCHEMA_ENGINE_BINARY
// at any existing file satisfies that check; generate never executes it.
'use strict';
const { spawnSync } = require('node:child_process');
const path = require('node:path');

const env = { ...process.env, PRISMA_HIDE_UPDATE_MESSAGE: '1' };
if (!env.PRISMA_SCHEMA_ENGINE_BINARY) env.PRISMA_SCHEMA_ENGINE_BINARY = process.execPath;
const cli = require.resolve('prisma/build/index.js');
const result = spawnSync(process.execPath, [cli, 'generate', '--no-hints'], {
  cwd: path.join(__dirname, '..'),
  env,
  stdio: ['ignore', 'ignore', 'inherit'],
});
process.exit(result.status ?? 1);
