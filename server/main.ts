/** Process entry of the front: configuration, logging, start, and signals. */
import path from 'node:path';
import v8 from 'node:v8';
import { ConfigError, loadConfig } from './config.js';
import { createLogger } from './logger.js';
import { launchCells } from './cells/launch-cells.js';
import { startBanner } from './start-banner.js';
import { providerOf } from './store/database-target.js';
import { messageOf } from '../protocol/errors.js';

const LOOPBACK = new Set(['127.0.0.1', '::1', 'localhost']);

/** `banner`: also tell the person at the terminal where to go and how to get a token (`npm start`). */
export async function main(options: { banner?: boolean } = {}): Promise<void> {
  let config;
  try {
    config = loadConfig(process.env, process.cwd());
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`atoll: ${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }
  // Before any WebAssembly is compiled (Prisma's query compiler loads at the first query): V8 tiers hot wasm
  // functions up to TurboFan, and in the front that code and its compilation held ~40-70 MiB of RSS. On SQLite
  // the run path does not go through Prisma and Liftoff's code alone cost no CPU measured (three interleaved pairs);
  // on PostgreSQL the front's CPU per run rose ~7% without TurboFan (three pairs), so it keeps it.
  if (providerOf(config.database) === 'sqlite') v8.setFlagsFromString('--liftoff-only');
  const log = createLogger(config.logLevel, { process: 'front' });
  let atoll: Awaited<ReturnType<typeof import('./atoll.js').startAtoll>>;
  try {
    // The cells first, then the rest of the front's modules: the two start-ups overlap (server/cells/launch-cells.ts).
    const launching = launchCells(config, log, path.resolve(__dirname, '../..'));
    launching.catch(() => undefined);
    const { startAtoll } = require('./atoll.js') as typeof import('./atoll.js');
    atoll = await startAtoll(config, log, launching);
  } catch (err) {
    log.fatal({ err: messageOf(err) }, 'failed to start');
    process.stderr.write(`atoll: failed to start: ${messageOf(err)}\n`);
    process.exit(1);
  }
  const url = `http://${config.host.includes(':') ? `[${config.host}]` : config.host}:${atoll.port}`;
  log.info({ port: atoll.port, url, dev_login: config.devLogin, metrics: config.metricsToken ? 'token' : 'open' }, 'listening');
  // Open metrics are right on a private port (behind HAProxy), a leak on a public one: say so where it may be public.
  if (config.production && !config.metricsToken && !LOOPBACK.has(config.host)) {
    log.warn({ host: config.host }, '/metrics answers whoever reaches this port: set METRICS_TOKEN, or keep the port private');
  }
  if (options.banner) process.stderr.write(`${startBanner(config, atoll.port)}\n`);
  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    process.once(signal, () => {
      atoll.stop().then(
        () => process.exit(0),
        (err) => {
          log.error({ err: String(err) }, 'shutdown failed');
          process.exit(1);
        },
      );
    });
  }
}

// Run when started as `node dist/server/main.js`; scripts/start.js calls main() itself.
if (require.main === module) void main();
