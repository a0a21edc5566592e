/**
 * One run as the page shows it, built only from its events in seq order. Pure data, no DOM: the view
 * renders it, the conversation feeds it. An event at or below the last seq applied is a duplicate and is
 * ignored; one past the next seq is a gap, which the caller closes with subscribe_run from the last seq.
 */
import { type AnyRunEventEnvelope as Envelope } from '../../../protocol/events';

export type Phase = 'sending' | 'loading' | 'queued' | 'running' | 'completed' | 'failed' | 'cancelled' | 'timeout';

interface SegmentBase {
  /** Bumped on every change, so the view re-renders only what changed. */
  rev: number;
}
export type Segment =
  | (SegmentBase & { kind: 'text'; text: string })
  | (SegmentBase & { kind: 'thinking'; text: string; atMs: number })
  | (SegmentBase & { kind: 'tool'; callId: string; name: string; parameters: unknown; status: 'running' | 'success' | 'error'; results?: unknown; ms?: number; atMs: number })
  | (SegmentBase & { kind: 'notice'; text: string });

export interface RunState {
  runId: string | null;
  correlationId: string | null;
  agent: string;
  /** The user's message; null until the history says it (a run started in another tab). */
  userText: string | null;
  lastSeq: number;
  phase: Phase;
  queuePosition: number | null;
  segments: Segment[];
  /** agent_completed.final_response. */
  final: unknown;
  error: { code: string; message: string } | null;
  executionMs: number | null;
  /** Timestamp of the first event, the origin of the steps' times. */
  startedAt: number | null;
  /** The stored answer from the history, shown while no event of the run has been applied. */
  stored: { content: string; status: 'complete' | 'interrupted' } | null;
  /** A stop was asked and not yet answered by the terminal event. */
  stopping: boolean;
  /** Bumped on every change. */
  rev: number;
}

export const OPEN_PHASES: ReadonlySet<Phase> = new Set(['sending', 'loading', 'queued', 'running']);

export function newRun(init: Partial<RunState> & { agent: string }): RunState {
  return {
    runId: null,
    correlationId: null,
    userText: null,
    lastSeq: 0,
    phase: 'loading',
    queuePosition: null,
    segments: [],
    final: undefined,
    error: null,
    executionMs: null,
    startedAt: null,
    stored: null,
    stopping: false,
    rev: 0,
    ...init,
  };
}

export const isOpen = (run: RunState) => OPEN_PHASES.has(run.phase);

export type ApplyResult = 'applied' | 'duplicate' | 'gap';

export function applyEnvelope(run: RunState, e: Envelope): ApplyResult {
  if (e.seq <= run.lastSeq) return 'duplicate';
  // A lagging socket may get consecutive partial_result events merged: they cover coalesced_from_seq..seq.
  if ((e.coalesced_from_seq ?? e.seq) !== run.lastSeq + 1) return 'gap';
  run.lastSeq = e.seq;
  run.rev++;
  const at = Date.parse(e.timestamp);
  run.startedAt ??= at;
  const atMs = at - run.startedAt;
  const last = run.segments.at(-1);
  switch (e.type) {
    case 'message_received':
      if (run.phase === 'loading' || run.phase === 'sending') run.phase = 'queued';
      break;
    case 'run_queued':
      run.phase = 'queued';
      run.queuePosition = typeof e.payload.position === 'number' ? e.payload.position : null;
      break;
    case 'agent_started':
      run.phase = 'running';
      run.queuePosition = null;
      break;
    case 'run_restarted':
      // The run starts again from scratch in a fresh cell: what it streamed before is superseded.
      run.segments = [{ kind: 'notice', rev: 0, text: `The worker running this answer died; it is starting again (attempt ${String(e.payload.attempt ?? '?')}). Other conversations were not affected.` }];
      run.phase = 'queued';
      break;
    case 'agent_thinking':
      if (last?.kind === 'thinking') {
        last.text += String(e.payload.reasoning ?? '');
        last.rev++;
      } else run.segments.push({ kind: 'thinking', rev: 0, text: String(e.payload.reasoning ?? ''), atMs });
      break;
    case 'partial_result':
      if (last?.kind === 'text') {
        last.text += String(e.payload.text ?? '');
        last.rev++;
      } else run.segments.push({ kind: 'text', rev: 0, text: String(e.payload.text ?? '') });
      break;
    case 'tool_executing':
      run.segments.push({ kind: 'tool', rev: 0, callId: String(e.payload.tool_call_id ?? ''), name: String(e.payload.tool_name ?? 'tool'), parameters: e.payload.parameters, status: 'running', atMs });
      break;
    case 'tool_completed': {
      const tool = [...run.segments].reverse().find((s) => s.kind === 'tool' && s.callId === String(e.payload.tool_call_id ?? '') && s.status === 'running');
      if (tool?.kind === 'tool') {
        tool.status = e.payload.status === 'success' ? 'success' : 'error';
        tool.results = e.payload.results;
        tool.ms = typeof e.payload.execution_time_ms === 'number' ? e.payload.execution_time_ms : undefined;
        tool.rev++;
      }
      break;
    }
    case 'agent_completed': {
      const status = String(e.payload.status ?? 'failed');
      run.phase = status === 'completed' || status === 'cancelled' || status === 'timeout' ? status : 'failed';
      run.final = e.payload.final_response;
      const err = e.payload.error as { code?: unknown; message?: unknown } | undefined;
      run.error = err ? { code: String(err.code ?? 'INTERNAL'), message: String(err.message ?? '') } : null;
      run.executionMs = typeof e.payload.execution_time_ms === 'number' ? e.payload.execution_time_ms : null;
      run.stopping = false;
      run.queuePosition = null;
      // An agent that answers without streaming (echo) still shows its answer as text.
      if (run.phase === 'completed' && !run.segments.some((s) => s.kind === 'text') && typeof run.final === 'string' && run.final) {
        run.segments.push({ kind: 'text', rev: 0, text: run.final });
      }
      break;
    }
    default:
      // A type this page does not know (a newer server): counted by seq, not shown.
      break;
  }
  return 'applied';
}

/** The answer's text so far: every streamed piece, in order. */
export function answerText(run: RunState): string {
  return run.segments.flatMap((s) => (s.kind === 'text' ? [s.text] : [])).join('');
}
