/** Process entry of the front: configuration, logging, start, and signals. */
import { ConfigError, loadConfig } from './config.js';
import { createLogger } from './logger.js';
import { startAtoll } from './atoll.js';

async function main(): Promise<void> {
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
  const log = createLogger(config.logLevel, { process: 'front' });
  let atoll: Awaited<ReturnType<typeof startAtoll>>;
  try {
    atoll = await startAtoll(config, log);
  } catch (err) {
    log.fatal({ err: String((err as Error)?.message ?? err) }, 'failed to start');
    process.stderr.write(`atoll: failed to start: ${(err as Error)?.message ?? err}\n`);
    process.exit(1);
  }
  const url = `http://${config.host.includes(':') ? `[${config.host}]` : config.host}:${atoll.port}`;
  log.info({ port: atoll.port, url, dev_login: config.devLogin }, 'listening');
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

void main();
