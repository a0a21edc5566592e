/**
 * Tracing on (OTEL_EXPORTER_OTLP_ENDPOINT set): loads the OpenTelemetry SDK, here and only here, and exports
 * the front's spans over OTLP/HTTP (protobuf, or JSON with OTEL_EXPORTER_OTLP_PROTOCOL=http/json). The
 * provider is not registered globally: the run tracer is handed to what makes spans, like every dependency.
 */
import type { SpanExporter } from '@opentelemetry/sdk-trace';
import type { TracingSettings } from '../config.js';
import type { Logger } from '../logger.js';
import { createRunTracer, type RunTracer } from './run-tracer.js';

export interface Tracing {
  tracer: RunTracer;
  /** Exports what is still buffered, then stops the exporter. */
  stop(): Promise<void>;
}

export async function startTracing(settings: TracingSettings, nodeId: string, log: Logger): Promise<Tracing> {
  const [api, sdk, resources, core, exporters] = await Promise.all([
    import('@opentelemetry/api'),
    import('@opentelemetry/sdk-trace'),
    import('@opentelemetry/resources'),
    import('@opentelemetry/core'),
    settings.protocol === 'http/json' ? import('@opentelemetry/exporter-trace-otlp-http') : import('@opentelemetry/exporter-trace-otlp-proto'),
  ]);
  // Headers, timeout, compression and certificates: the exporter reads OTEL_EXPORTER_OTLP_* itself.
  const exporter = reportingFailures(new exporters.OTLPTraceExporter({ url: settings.url }), log);
  const provider = new sdk.TracerProvider({
    resource: resources.resourceFromAttributes({ 'service.name': settings.serviceName, 'service.instance.id': nodeId }),
    spanProcessors: [new sdk.BatchSpanProcessor({ exporter, scheduledDelayMillis: settings.scheduledDelayMs })],
  });
  const tracer = createRunTracer({ api, tracer: provider.getTracer('atoll'), propagator: new core.W3CTraceContextPropagator() });
  return { tracer, stop: () => provider.shutdown() };
}

/**
 * The SDK reports a failed export to OpenTelemetry's global diagnostic logger only (silent unless one is set, and
 * setting it is global state): the front logs the first failure of each streak instead, and the recovery.
 */
export function reportingFailures(exporter: SpanExporter, log: Logger): SpanExporter {
  let failing = false;
  return {
    export(spans, done) {
      exporter.export(spans, (result) => {
        if (result.error !== undefined || result.code !== 0) {
          if (!failing) log.warn({ err: String(result.error?.message ?? result.error ?? 'failed'), spans: spans.length }, 'exporting spans failed (OTEL_EXPORTER_OTLP_ENDPOINT); spans are dropped until it works again');
          failing = true;
        } else if (failing) {
          failing = false;
          log.info('exporting spans works again');
        }
        done(result);
      });
    },
    shutdown: () => exporter.shutdown(),
    forceFlush: () => exporter.forceFlush?.() ?? Promise.resolve(),
  };
}
