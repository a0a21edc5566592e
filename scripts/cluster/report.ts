/**
 * The checker's printout: the seed, what was checked (counts, faults), and for each violation the history of
 * the runs it names: the row, every logged event, every recorded change of the row, and what each socket
 * received of it.
 */
import type { CheckResult } from './checks/check-history.js';
import { VIOLATION_KINDS, type Violation } from './checks/violation.js';
import type { History } from './history.js';

/** Runs whose whole history is printed; the rest are listed by their one-line finding only. */
const MAX_RUNS_SHOWN = 8;

const short = (v: unknown, max = 120) => {
  const s = typeof v === 'string' ? v : JSON.stringify(v);
  return s === undefined ? '' : s.length > max ? `${s.slice(0, max)}…` : s;
};

export function runHistory(h: History, runId: string): string {
  const lines: string[] = [`  run ${runId}`];
  const row = h.runs.find((r) => r.id === runId);
  lines.push(row ? `    row: ${short({ ...row, raw: undefined }, 400)}` : '    row: none');
  for (const e of h.events.filter((x) => x.runId === runId).sort((a, b) => a.seq - b.seq)) {
    lines.push(`    log  #${e.seq} ${e.type} ${new Date(e.timestampMs).toISOString()} ${short(e.payload)}`);
  }
  for (const t of (h.transitions ?? []).filter((x) => x.runId === runId)) {
    lines.push(`    change #${t.id} ${t.from ?? '(insert)'} → ${t.to ?? '(delete)'} attempts=${t.attempts} ${new Date(t.atMs).toISOString()} ${short(t.row, 200)}`);
  }
  for (const r of h.requests.filter((x) => (x.outcome.kind === 'accepted' && x.outcome.runId === runId) || (row && row.correlationId !== null && x.correlationId === row.correlationId && x.userId === row.userId))) {
    lines.push(`    request ${r.id} ${r.via} on ${r.node} ${r.multitask} sent ${r.sentAt} answered ${r.answeredAt ?? '-'}: ${short(r.outcome)}`);
  }
  for (const c of h.clients) {
    for (const s of c.sockets) {
      const got = s.received.filter((d) => d.envelope.run_id === runId);
      if (got.length === 0) continue;
      const seqs = got.map((d) => `${d.final ? 'f' : ''}${d.envelope.coalesced_from_seq !== undefined ? `${d.envelope.coalesced_from_seq}..` : ''}${d.envelope.seq}`);
      lines.push(`    socket ${s.id} on ${s.node} (${s.connectedAt}–${s.closedAt ?? 'open'}): ${seqs.join(' ')}`);
    }
  }
  return lines.join('\n');
}

export function formatResult(h: History, result: CheckResult, context: { seed: number; header: string[] }): string {
  const c = result.counts;
  const lines = [
    ...context.header,
    `checked: ${c.runs} runs, ${c.events} logged events, ${c.transitions ?? 'no'} recorded row changes, ${c.requests} requests (${c.acknowledged} acknowledged, ${c.refused} refused, ${c.lost} unanswered)`,
    `         ${c.clients} clients over ${c.sockets} sockets, ${c.deliveries} deliveries, ${c.steadyPairs} (socket, run) pairs that had to be complete live, ${c.followedPairs} (client, run) pairs after catch-up`,
    ...result.skipped.map((s) => `skipped: ${s}`),
  ];
  if (result.violations.length === 0) {
    lines.push(`no violation (seed ${context.seed})`);
    return lines.join('\n');
  }
  const byKind = new Map<string, Violation[]>();
  for (const v of result.violations) byKind.set(v.kind, [...(byKind.get(v.kind) ?? []), v]);
  lines.push(`VIOLATIONS: ${result.violations.length} (seed ${context.seed})`);
  for (const [kind, list] of byKind) {
    lines.push(`- ${kind} (${list.length}): ${VIOLATION_KINDS[kind as keyof typeof VIOLATION_KINDS]}`);
    for (const v of list.slice(0, 20)) lines.push(`    ${v.message}`);
    if (list.length > 20) lines.push(`    … ${list.length - 20} more`);
  }
  const shown = [...new Set(result.violations.flatMap((v) => (v.runId ? [v.runId, ...(v.otherRunIds ?? [])] : [])))].slice(0, MAX_RUNS_SHOWN);
  if (shown.length > 0) {
    lines.push('', 'history of the runs involved (log: the database; change: the audit of the row; f: received in the final catch-up):');
    for (const id of shown) lines.push(runHistory(h, id));
  }
  return lines.join('\n');
}
