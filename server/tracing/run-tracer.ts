/**
 * The spans of a run, made in the front: the run (root), its acceptance, its wait in the queue, its dispatch
 * (until a worker started it), its execution with each model call and tool call under it, and the writing
 * of its terminal event. Only ids, names, timings, codes and statuses go into spans: never a message, a
 * tool's parameters or results, nor an error's message (an agent's error may quote the conversation).
 *
 * This file imports OpenTelemetry as types only: the API is handed in by start-tracing.ts, which loads it
 * only when tracing is on, so a server without OTEL_EXPORTER_OTLP_ENDPOINT loads no OpenTelemetry module.
 */
import type * as Otel from '@opentelemetry/api';
import type { ModelCallTiming } from '../../protocol/cell-messages.js';
import type { ErrorBody } from '../../protocol/errors.js';
import type { AgentEvent, TerminalStatus } from '../../protocol/events.js';
import type { LiveRun } from '../runs/live-run.js';

export interface RunTracer {
  /** The run is stored and queued; `receivedAt`: when the run service took the request up. */
  accepted(run: LiveRun, receivedAt: number): void;
  /** The run goes to a cell; returns the W3C traceparent the run message carries (null: tracing is off). */
  dispatched(run: LiveRun): string | null;
  /** A worker of the cell started the run (at the cell's `startedAt`). */
  started(run: LiveRun, startedAt: number): void;
  /** An event the run's agent emitted: tool_executing / tool_completed frame a tool call span. */
  event(run: LiveRun, event: AgentEvent): void;
  /** The cell's model broker answered (or gave up on) one of the run's model requests. */
  modelCall(run: LiveRun, call: ModelCallTiming): void;
  /** The run ended with `status`; its terminal event is being written. */
  finishing(run: LiveRun, status: TerminalStatus, error: ErrorBody | null): void;
  /** The terminal event is written and delivered: the run's trace is complete. */
  settled(run: LiveRun): void;
}

/** Tracing off: nothing is recorded, no field is added to any message. */
export const NO_TRACING: RunTracer = Object.freeze({
  accepted: () => undefined,
  dispatched: () => null,
  started: () => undefined,
  event: () => undefined,
  modelCall: () => undefined,
  finishing: () => undefined,
  settled: () => undefined,
});

/** The OpenTelemetry parts a RunTracer needs, loaded by start-tracing.ts. */
export interface OtelParts {
  api: typeof Otel;
  tracer: Otel.Tracer;
  propagator: Otel.TextMapPropagator;
}

/** What an agent names its tools is its own choice: kept short in span names and attributes. */
const MAX_TOOL_NAME = 64;
/** Open tool call spans per run: an agent emitting tool_executing in a loop must not grow the front. */
const MAX_OPEN_TOOL_CALLS = 64;
/**
 * Distinct tool span names per tracer, OTHER_TOOL_SPAN included: span names are the backend's index (Jaeger's
 * operations, Tempo's span-metrics labels), and tool names are the model's or the agent's choice. The first
 * MAX_TOOL_SPAN_NAMES - 1 tools seen get a name of their own, later ones share OTHER_TOOL_SPAN; every tool's own
 * name stays in the `gen_ai.tool.name` attribute.
 */
const MAX_TOOL_SPAN_NAMES = 32;
const OTHER_TOOL_SPAN = 'execute_tool (other)';

interface RunSpans {
  root: Otel.Span;
  queue: Otel.Span | null;
  dispatch: Otel.Span | null;
  execute: Otel.Span | null;
  terminal: Otel.Span | null;
  tools: Map<string, Otel.Span>;
}

export function createRunTracer({ api, tracer, propagator }: OtelParts): RunTracer {
  // Per live run, dropped with it (a run that leaves the front without settling leaves nothing behind).
  const spans = new WeakMap<LiveRun, RunSpans>();
  // The tools with a span name of their own: the first ones this tracer (the process's one) saw.
  const namedTools = new Set<string>();
  const toolSpanName = (tool: string): string => {
    if (!namedTools.has(tool)) {
      if (namedTools.size >= MAX_TOOL_SPAN_NAMES - 1) return OTHER_TOOL_SPAN;
      namedTools.add(tool);
    }
    return `execute_tool ${tool}`;
  };
  const under = (parent: Otel.Span) => api.trace.setSpan(api.ROOT_CONTEXT, parent);
  const child = (parent: Otel.Span, name: string, startTime: number, attributes: Otel.Attributes = {}, kind = api.SpanKind.INTERNAL) =>
    tracer.startSpan(name, { startTime, attributes, kind }, under(parent));

  /**
   * The run's spans, its root started at `since` if they do not exist yet (a run taken up without being accepted
   * here, recovered or claimed from another node, gets its root at its acceptance time).
   */
  function of(run: LiveRun, since = run.acceptedAt): RunSpans {
    let s = spans.get(run);
    if (!s) {
      const root = tracer.startSpan(
        'atoll.run',
        { root: true, startTime: since, kind: api.SpanKind.SERVER, attributes: { 'atoll.run.id': run.id, 'atoll.user.id': run.userId, 'atoll.thread.id': run.threadId, 'atoll.agent': run.agentName } },
        api.ROOT_CONTEXT,
      );
      s = { root, queue: null, dispatch: null, execute: null, terminal: null, tools: new Map() };
      spans.set(run, s);
      run.traceId = root.spanContext().traceId;
    }
    return s;
  }

  /** Ends what an attempt left open (its cell died and the run is dispatched again, or the run ended). */
  function endAttempt(s: RunSpans, at: number, failed: { code: string } | null): void {
    for (const span of s.tools.values()) {
      span.setStatus({ code: api.SpanStatusCode.ERROR, message: 'the run ended during this tool call' });
      span.end(at);
    }
    s.tools.clear();
    for (const key of ['queue', 'dispatch', 'execute'] as const) {
      const span = s[key];
      if (!span) continue;
      if (failed) span.setStatus({ code: api.SpanStatusCode.ERROR, message: failed.code });
      span.end(at);
      s[key] = null;
    }
  }

  return {
    accepted(run, receivedAt) {
      const s = of(run, receivedAt);
      // Stored now (the run and its first event are written): the wait for a slot starts.
      const storedAt = Date.now();
      child(s.root, 'atoll.accept', receivedAt).end(storedAt);
      s.queue = child(s.root, 'atoll.queue', storedAt);
    },

    dispatched(run) {
      const s = of(run);
      const now = Date.now();
      // A second attempt: the first one's cell died under it.
      endAttempt(s, now, s.dispatch || s.execute ? { code: 'ATTEMPT_ENDED' } : null);
      s.dispatch = child(s.root, 'atoll.dispatch', now, { 'atoll.attempt': run.attempt, ...(run.cellId ? { 'atoll.cell': run.cellId } : {}) });
      const carrier: Record<string, string> = {};
      propagator.inject(under(s.dispatch), carrier, api.defaultTextMapSetter);
      return carrier.traceparent ?? null;
    },

    started(run, startedAt) {
      const s = spans.get(run);
      if (!s) return;
      s.dispatch?.end(startedAt);
      s.dispatch = null;
      s.execute = child(s.root, 'atoll.execute', startedAt, { 'atoll.attempt': run.attempt, ...(run.cellId ? { 'atoll.cell': run.cellId } : {}), ...(run.workerId !== null ? { 'atoll.worker': run.workerId } : {}) });
    },

    event(run, event) {
      const s = spans.get(run);
      if (!s?.execute || (event.type !== 'tool_executing' && event.type !== 'tool_completed')) return;
      const id = String(event.payload.tool_call_id ?? '').slice(0, 128);
      if (event.type === 'tool_executing') {
        if (s.tools.size >= MAX_OPEN_TOOL_CALLS || s.tools.has(id)) return;
        const name = String(event.payload.tool_name ?? '').slice(0, MAX_TOOL_NAME);
        s.tools.set(id, child(s.execute, toolSpanName(name), event.timestamp, { 'gen_ai.operation.name': 'execute_tool', 'gen_ai.tool.name': name, 'gen_ai.tool.call.id': id }));
        return;
      }
      const span = s.tools.get(id);
      if (!span) return;
      s.tools.delete(id);
      if (event.payload.status !== 'success') span.setStatus({ code: api.SpanStatusCode.ERROR, message: 'the tool call failed' });
      span.end(event.timestamp);
    },

    modelCall(run, call) {
      const s = spans.get(run);
      const parent = s?.execute ?? s?.root;
      if (!parent) return;
      const span = child(parent, 'chat', call.startedAt, { 'gen_ai.operation.name': 'chat', 'atoll.model.outcome': call.outcome, ...(call.httpStatus !== null ? { 'http.response.status_code': call.httpStatus } : {}) }, api.SpanKind.CLIENT);
      if (call.outcome !== 'ok') span.setStatus({ code: api.SpanStatusCode.ERROR, message: call.outcome });
      span.end(call.endedAt);
    },

    finishing(run, status, error) {
      const s = of(run);
      const now = Date.now();
      const failed = status === 'failed' || status === 'timeout' ? { code: error?.code ?? status.toUpperCase() } : null;
      endAttempt(s, now, failed);
      s.root.setAttributes({ 'atoll.run.status': status, 'atoll.run.attempts': run.attempt, ...(error ? { 'atoll.error.code': error.code } : {}) });
      if (failed) s.root.setStatus({ code: api.SpanStatusCode.ERROR, message: failed.code });
      s.terminal = child(s.root, 'atoll.terminal', now, { 'atoll.run.status': status });
    },

    settled(run) {
      const s = spans.get(run);
      if (!s) return;
      spans.delete(run);
      const now = Date.now();
      s.terminal?.end(now);
      s.root.end(now);
    },
  };
}
