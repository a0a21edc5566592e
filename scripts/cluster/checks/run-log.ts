/**
 * Each run's own history: its acknowledgement, its row and its event log at the end. Every acknowledged run
 * exists; every run is finished, with seqs 1..n from message_received, exactly one agent_completed, last, that
 * matches its row; starts within MAX_RUN_ATTEMPTS; each restart once (its `attempt` never repeats); agents
 * that are not repeatable never run again.
 */
import { isTerminal, type History, type Limits, type LoggedEvent, type RunRow } from '../history.js';
import type { Violation } from './violation.js';

export function eventsByRun(events: readonly LoggedEvent[]): Map<string, LoggedEvent[]> {
  const byRun = new Map<string, LoggedEvent[]>();
  for (const e of events) {
    const list = byRun.get(e.runId);
    if (list) list.push(e);
    else byRun.set(e.runId, [e]);
  }
  for (const list of byRun.values()) list.sort((a, b) => a.seq - b.seq);
  return byRun;
}

export function checkAcknowledged(h: History): Violation[] {
  const rows = new Map(h.runs.map((r) => [r.id, r]));
  const out: Violation[] = [];
  for (const req of h.requests) {
    if (req.outcome.kind !== 'accepted') continue;
    const { runId, threadId } = req.outcome;
    const row = rows.get(runId);
    const where = `request ${req.id} (${req.via} on ${req.node})`;
    if (!row) out.push({ kind: 'acked_run_missing', runId, where, message: `run ${runId} was acknowledged to ${req.userId} but has no row` });
    else if (row.userId !== req.userId) out.push({ kind: 'acked_run_missing', runId, where, message: `run ${runId} was acknowledged to ${req.userId} but its row belongs to ${row.userId}` });
    else if (row.threadId !== threadId || (req.threadId !== null && req.threadId !== threadId)) {
      out.push({ kind: 'acked_run_missing', runId, where, message: `run ${runId} was acknowledged on thread ${threadId} (asked: ${req.threadId ?? 'new'}) but its row is on ${row.threadId}` });
    }
  }
  return out;
}

function checkOneRun(row: RunRow, log: LoggedEvent[], limits: Limits): Violation[] {
  const out: Violation[] = [];
  const v = (kind: Violation['kind'], message: string) => out.push({ kind, runId: row.id, message });
  if (!isTerminal(row.status)) v('not_settled', `run ${row.id} is still ${row.status}`);

  const seqs = log.map((e) => e.seq);
  if (seqs.some((s, i) => s !== i + 1)) v('seq_gap', `run ${row.id}: logged seqs ${seqs.join(',')} are not 1..${seqs.length}`);
  else if (log.length > 0 && log[0].type !== 'message_received') v('seq_gap', `run ${row.id}: seq 1 is ${log[0].type}, not message_received`);

  const terminals = log.filter((e) => e.type === 'agent_completed');
  if (terminals.length !== 1) v('terminal_count', `run ${row.id} has ${terminals.length} agent_completed events`);
  if (terminals.length > 0 && log[log.length - 1].type !== 'agent_completed') {
    v('terminal_not_last', `run ${row.id}: ${log.length - log.indexOf(terminals[0]) - 1} event(s) after its agent_completed (last: ${log[log.length - 1].type} seq ${log[log.length - 1].seq})`);
  }
  if (terminals.length === 1 && isTerminal(row.status)) {
    const p = (terminals[0].payload ?? {}) as { status?: unknown; error?: { code?: unknown } };
    const code = p.error?.code ?? null;
    if (p.status !== row.status || code !== row.errorCode) {
      v('status_mismatch', `run ${row.id}: agent_completed says ${String(p.status)}/${String(code)}, the row ${row.status}/${String(row.errorCode)}`);
    }
  }

  const starts = log.filter((e) => e.type === 'agent_started').length;
  if (row.attempts > limits.maxRunAttempts || starts > limits.maxRunAttempts) {
    v('attempts_exceeded', `run ${row.id}: attempts ${row.attempts} in its row, ${starts} agent_started events; MAX_RUN_ATTEMPTS is ${limits.maxRunAttempts}`);
  }

  // A takeover is announced once per lost attempt: two nodes restarting the same attempt would both log the same
  // next attempt number.
  const restarts = log.filter((e) => e.type === 'run_restarted');
  const numbers = restarts.map((e) => Number((e.payload as { attempt?: unknown } | null)?.attempt));
  const repeated = numbers.find((n, i) => !Number.isInteger(n) || (i > 0 && n <= numbers[i - 1]));
  if (repeated !== undefined) v('restart_duplicate', `run ${row.id}: run_restarted attempts ${numbers.join(',')} (each restart must name a new, higher attempt)`);
  else if (numbers.some((n) => n > limits.maxRunAttempts)) v('attempts_exceeded', `run ${row.id}: restarted as attempt ${Math.max(...numbers)} > MAX_RUN_ATTEMPTS ${limits.maxRunAttempts}`);

  if (limits.unrepeatableAgents.includes(row.agentName) && (restarts.length > 0 || starts > 1)) {
    v('unrepeatable_rerun', `run ${row.id} of the unrepeatable agent ${row.agentName}: ${starts} starts, ${restarts.length} run_restarted`);
  }
  return out;
}

export function checkRunLogs(h: History, limits: Limits): Violation[] {
  const byRun = eventsByRun(h.events);
  const out: Violation[] = [];
  for (const row of h.runs) out.push(...checkOneRun(row, byRun.get(row.id) ?? [], limits));
  const known = new Set(h.runs.map((r) => r.id));
  for (const runId of byRun.keys()) {
    if (!known.has(runId)) out.push({ kind: 'seq_gap', runId, message: `events are logged for run ${runId}, which has no row` });
  }
  return out;
}
