/** Structured JSON logs. Tokens, secrets and message bodies never go into log fields at info level. */
import pino from 'pino';

export type Logger = pino.Logger;

export function createLogger(level: string, bindings: Record<string, unknown> = {}): Logger {
  return pino({
    level,
    base: { pid: process.pid, ...bindings },
    timestamp: pino.stdTimeFunctions.isoTime,
    redact: { paths: ['token', 'authorization', '*.token', '*.authorization', 'input', '*.input'], censor: '[redacted]' },
  });
}
