/**
 * The front's span exporter wrapper (server/tracing/start-tracing.ts): a failed export is logged once per streak
 * of failures, its recovery once, and every result still reaches the SDK's batch processor.
 */
import { reportingFailures } from '../../server/tracing/start-tracing';
import type { Logger } from '../../server/logger';
import type { ReadableSpan, SpanExporter } from '@opentelemetry/sdk-trace';

type Result = Parameters<Parameters<SpanExporter['export']>[1]>[0];

test('a streak of failed exports is logged once, its recovery once; every result is passed on', () => {
  const lines: [string, string, unknown][] = [];
  const log = {
    warn: (fields: unknown, msg: string) => lines.push(['warn', msg, fields]),
    info: (msg: string) => lines.push(['info', msg, null]),
  } as unknown as Logger;
  const outcomes: Result[] = [
    { code: 1, error: new Error('connect ECONNREFUSED 127.0.0.1:4318') },
    { code: 1, error: new Error('connect ECONNREFUSED 127.0.0.1:4318') },
    { code: 0 },
    { code: 0 },
    { code: 1, error: new Error('Unprocessable') },
  ];
  let next = 0;
  const inner: SpanExporter = { export: (_spans, done) => done(outcomes[next++]), shutdown: () => Promise.resolve() };
  const exporter = reportingFailures(inner, log);
  const passed: Result[] = [];
  for (let i = 0; i < outcomes.length; i++) exporter.export([{} as ReadableSpan, {} as ReadableSpan], (r) => passed.push(r));
  expect(passed).toEqual(outcomes);
  expect(lines.map(([level, msg]) => `${level} ${msg}`)).toEqual([
    'warn exporting spans failed (OTEL_EXPORTER_OTLP_ENDPOINT); spans are dropped until it works again',
    'info exporting spans works again',
    'warn exporting spans failed (OTEL_EXPORTER_OTLP_ENDPOINT); spans are dropped until it works again',
  ]);
  expect(lines[0][2]).toEqual({ err: 'connect ECONNREFUSED 127.0.0.1:4318', spans: 2 });
});
