/** Structured JSON logs. Tokens, secrets and message bodies never go into log fields at info level. */
import { isMainThread } from 'node:worker_threads';
import pino from 'pino';

export type Logger = pino.Logger;

const REDACTED = ['token', 'authorization', 'cookie', 'secret', 'password', 'apiKey', 'api_key', 'input', 'text', 'content', 'messages', 'prompt', 'result', 'final_response'];

export function createLogger(level: string, bindings: Record<string, unknown> = {}): Logger {
  const options: pino.LoggerOptions = {
    level,
    base: { pid: process.pid, ...bindings },
    timestamp: pino.stdTimeFunctions.isoTime,
    // Credentials and conversation content, at the top level or one object down. The run lines log ids,
    // timings and counts only; this catches a field someone adds later (an agent's ctx.log included).
    redact: { paths: REDACTED.flatMap((key) => [key, `*.${key}`]), censor: '[redacted]' },
  };
  // A worker thread writes each line before going on: pino's default buffers and writes later, and a thread the
  // cell terminates right after its run (a recycle, a timeout) would take its last lines with it. The main thread
  // keeps the default, which pino flushes when the process exits.
  return isMainThread ? pino(options) : pino(options, pino.destination({ fd: 1, sync: true }));
}
