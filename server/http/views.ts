/** What the HTTP API and socket acks show of stored records (snake_case on the wire). */
import type { MessageRecord, RunRecord, ThreadRecord } from '../store/run-store.js';

export function runView(r: RunRecord) {
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

export function threadView(t: ThreadRecord) {
  return { id: t.id, title: t.title, created_at: t.createdAt.toISOString(), updated_at: t.updatedAt.toISOString() };
}

export function messageView(m: MessageRecord) {
  return { id: m.id, thread_id: m.threadId, run_id: m.runId, role: m.role, content: m.content, status: m.status, created_at: m.createdAt.toISOString() };
}
