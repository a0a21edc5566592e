/** Structured JSON logs. Tokens, secrets and message bodies never go into log fields at info level. */
import pino from 'pino';

export type Logger = pino.Logger;

const REDACTED = ['token', 'authorization', 'cookie', 'secret', 'password', 'apiKey', 'api_key', 'input', 'text', 'content', 'messages', 'prompt', 'result', 'final_response'];

/**
 * `sync`: write each line before going on. A worker thread's logger needs it (workers/worker/worker-main.ts):
 * pino's default buffers and writes later, and a thread the cell terminates right after its run (a recycle, a
 * timeout) would take its last lines with it. A process keeps the default, which pino flushes when it exits.
 */
export function createLogger(level: string, bindings: Record<string, unknown> = {}, opts: { sync?: boolean } = {}): Logger {
  const options: pino.LoggerOptions = {
    level,
    base: { pid: process.pid, ...bindings },
    timestamp: pino.stdTimeFunctions.isoTime,
    // Credentials and conversation content, at the top level or one object down. The run lines log ids,
    // timings and counts only; this catches a field someone adds later (an agent's ctx.log included).
    redact: { paths: REDACTED.flatMap((key) => [key, `*.${key}`]), censor: '[redacted]' },
  };
  return opts.sync ? pino(options, pino.destination({ fd: 1, sync: true })) : pino(options);
}
