/** Structured JSON logs. Tokens, secrets and message bodies never go into log fields at info level. */
import pino from 'pino';

export type Logger = pino.Logger;

const REDACTED = ['token', 'authorization', 'cookie', 'secret', 'password', 'apiKey', 'api_key', 'input', 'text', 'content', 'messages', 'prompt', 'result', 'final_response'];

export function createLogger(level: string, bindings: Record<string, unknown> = {}): Logger {
  return pino({
    level,
    base: { pid: process.pid, ...bindings },
    timestamp: pino.stdTimeFunctions.isoTime,
    // Credentials and conversation content, at the top level or one object down. The run lines log ids,
    // timings and counts only; this catches a field someone adds later (an agent's ctx.log included).
    redact: { paths: REDACTED.flatMap((key) => [key, `*.${key}`]), censor: '[redacted]' },
  });
}
