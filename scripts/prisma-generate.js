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
// One client per database (prisma/<kind>/schema.prisma → prisma/generated/<kind>/): the provider is fixed in
// the schema, so each database has its own folder and its own generated client.
for (const kind of ['sqlite', 'postgresql']) {
  const result = spawnSync(process.execPath, [cli, 'generate', '--no-hints', '--schema', `prisma/${kind}`], {
    cwd: path.join(__dirname, '..'),
    env,
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  if (result.status !== 0) process.exit(result.status ?? 1);
}
