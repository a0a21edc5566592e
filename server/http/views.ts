/** What the HTTP API and socket acks show of stored records (snake_case on the wire). */
import type { MessageRecord, RunRecord, ThreadRecord } from '../store/store.js';
import type { MessageView, RunView, ThreadView } from '../../protocol/views.js';
import { THREAD_CURSOR_SEPARATOR } from '../../protocol/requests.js';

export function runView(r: RunRecord): RunView {
  return {
    id: r.id,
    thread_id: r.threadId,
    user_id: r.userId,
    agent: r.agentName,
    status: r.status,
    input: r.input,
    result: r.result,
    error: r.error,
    correlation_id: r.correlationId,
    request_id: r.requestId,
    queued_at: r.queuedAt.toISOString(),
    started_at: r.startedAt?.toISOString() ?? null,
    finished_at: r.finishedAt?.toISOString() ?? null,
    ran_on: r.cellId ? { cell: r.cellId, worker: r.workerId } : null,
    attempts: r.attempts,
    isolation: r.report,
    replay_of: r.replayOf,
  };
}

export function threadView(t: ThreadRecord): ThreadView {
  return { id: t.id, title: t.title, created_at: t.createdAt.toISOString(), updated_at: t.updatedAt.toISOString() };
}

/** `next_before` of a page of threads ending with `t` (read back by protocol/requests.ts's ThreadsQuery). */
export function threadCursorOf(t: ThreadRecord): string {
  return `${t.updatedAt.toISOString()}${THREAD_CURSOR_SEPARATOR}${t.id}`;
}

export function messageView(m: MessageRecord): MessageView {
  return { id: m.id, thread_id: m.threadId, run_id: m.runId, role: m.role, content: m.content, status: m.status, created_at: m.createdAt.toISOString() };
}

/**
 * A page capped by size as well as count: the first item always (so a cursor advances), then as many as fit in
 * `maxBytes` serialized. `nextAfter` is the cursor to continue from (the last item's: its `id`, or what
 * `cursorOf` says), null at the end.
 */
export function pageBySize<T extends { id: number }>(items: T[], limit: number, maxBytes: number): { items: T[]; nextAfter: number | null };
export function pageBySize<T>(items: T[], limit: number, maxBytes: number, cursorOf: (item: T) => number): { items: T[]; nextAfter: number | null };
export function pageBySize<T>(items: T[], limit: number, maxBytes: number, cursorOf = (item: T) => (item as { id: number }).id): { items: T[]; nextAfter: number | null } {
  let bytes = 0;
  let n = 0;
  for (; n < items.length; n++) {
    bytes += Buffer.byteLength(JSON.stringify(items[n]));
    if (n > 0 && bytes > maxBytes) break;
  }
  const page = items.slice(0, n);
  const more = n < items.length || items.length === limit;
  return { items: page, nextAfter: more && page.length > 0 ? cursorOf(page[page.length - 1]) : null };
}
