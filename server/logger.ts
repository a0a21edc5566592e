/** Structured JSON logs. Tokens, secrets and message bodies never go into log fields at info level. */
import pino from 'pino';

export type Logger = pino.Logger;

const REDACTED = ['token', 'authorization', 'cookie', 'secret', 'password', 'apiKey', 'api_key', 'input', 'text', 'content', 'messages', 'prompt', 'result', 'final_response'];

/**
 * `write`: a synchronous writer each line goes to before logging returns. A worker thread's logger needs it
 * (workers/worker/worker-main.ts, with the writer workers/worker/fd-guards.ts keeps for it): pino's default
 * buffers and writes later, and a thread the cell terminates right after its run (a recycle, a timeout) would take
 * its last lines with it. A process keeps the default, which pino flushes when it exits.
 */
export function createLogger(level: string, bindings: Record<string, unknown> = {}, opts: { write?: (line: string) => void } = {}): Logger {
  const options: pino.LoggerOptions = {
    level,
    base: { pid: process.pid, ...bindings },
    timestamp: pino.stdTimeFunctions.isoTime,
    // Credentials and conversation content, at the top level or one object down. The run lines log ids,
    // timings and counts only; this catches a field someone adds later (an agent's ctx.log included).
    redact: { paths: REDACTED.flatMap((key) => [key, `*.${key}`]), censor: '[redacted]' },
  };
  const write = opts.write;
  return write ? pino(options, { write: (line: string) => write(line) }) : pino(options);
}
