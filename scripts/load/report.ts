/**
 * Turns what the users observed into the JSON report: counts that add up, latency percentiles,
 * throughput, containment (healthy runs under chaos versus without) and the verdict.
 */
import { CHAOS_EXPECTED, type LoadOptions } from './options.js';
import type { PhaseResult } from './phase.js';
import type { ServerReport } from './server-watch.js';
import { countBy, percentiles, ratio, round, sum, type Percentiles } from './stats.js';
import type { IsolationReport } from './verify.js';
import type { RunObservation } from './virtual-user.js';

export interface RunCounts {
  /** attempted = accepted + refused_total + ack_errors */
  attempted: number;
  /** accepted = completed + failed_total + unfinished */
  accepted: number;
  completed: number;
  failed_total: number;
  /** Every accepted run that did not complete, by its terminal error code. */
  failed_by_code: Record<string, number>;
  /** Accepted runs whose terminal event never arrived within --run-timeout. */
  unfinished: number;
  refused_total: number;
  /** Not accepted: OVERLOADED, RATE_LIMITED (and any other code the server answered). */
  refused: Record<string, number>;
  /** No acknowledgement within --ack-timeout (or the socket closed). */
  ack_errors: number;
}

export interface PhaseReport {
  name: string;
  chaos_share: number;
  started_at: string;
  duration_s: number;
  stopped_by_time: boolean;
  runs: RunCounts;
  healthy: RunCounts & { not_completed_correctly: number };
  chaos: RunCounts & {
    /** as_expected is null for a mode whose contained outcome this script does not know. */
    by_mode: Record<string, { runs: number; expected: string | null; outcomes: Record<string, number>; as_expected: number | null }>;
    unexpected: number;
  };
  latency_ms: { ack: Percentiles; first_event: Percentiles; agent_started: Percentiles; terminal: Percentiles };
  healthy_terminal_latency_ms: Percentiles;
  throughput: { runs_per_s: number | null; completed_per_s: number | null; events_received: number; events_per_s: number | null };
}

export interface LoadReport {
  tool: 'atoll-load';
  version: 1;
  target: string;
  started_at: string;
  finished_at: string;
  duration_s: number;
  options: Record<string, unknown>;
  phases: PhaseReport[];
  /** The phases' counts added together. */
  runs: RunCounts;
  containment: {
    healthy_runs: number;
    healthy_not_completed: number;
    healthy_failure_samples: { phase: string; user: string; run_id: string | null; status: string | null; code: string | null; why: string }[];
    healthy_terminal_latency_ms: { with_chaos: Percentiles | null; without_chaos: Percentiles | null };
    /** with chaos / without chaos, per percentile (1 = chaos costs healthy runs nothing). */
    latency_ratio: { p50: number | null; p95: number | null; p99: number | null } | null;
    chaos_runs: number;
    chaos_unexpected_outcomes: number;
  };
  isolation: IsolationReport;
  server: ServerReport;
  verdict: { ok: boolean; containment_ok: boolean; isolation_ok: boolean; notes: string[] };
}

export function countRuns(obs: readonly RunObservation[]): RunCounts {
  const accepted = obs.filter((o) => o.state === 'accepted');
  const finished = accepted.filter((o) => o.terminalMs !== null);
  const failed = finished.filter((o) => o.status !== 'completed');
  const refused = obs.filter((o) => o.state === 'refused');
  return {
    attempted: obs.length,
    accepted: accepted.length,
    completed: finished.length - failed.length,
    failed_total: failed.length,
    failed_by_code: countBy(failed, (o) => o.code ?? `NO_CODE(${o.status})`),
    unfinished: accepted.length - finished.length,
    refused_total: refused.length,
    refused: { OVERLOADED: 0, RATE_LIMITED: 0, ...countBy(refused, (o) => o.refusedCode ?? 'UNKNOWN') },
    ack_errors: obs.filter((o) => o.state === 'ack_error' || o.state === 'pending').length,
  };
}

/** Why a healthy run did not complete correctly, or null if it did. */
export function healthyFault(o: RunObservation): string | null {
  if (o.kind !== 'healthy' || o.state !== 'accepted') return null;
  if (o.terminalMs === null) return 'no terminal event within --run-timeout';
  if (o.status !== 'completed') return `ended ${o.status}${o.code ? ` (${o.code})` : ''}`;
  if (o.expectedResponse !== null && o.finalResponse !== o.expectedResponse) return 'echo answered another text than its own input';
  return null;
}

const outcomeName = (status: string | null, code: string | null) => `${status}${code ? `/${code}` : ''}`;

export function phaseReport(p: PhaseResult): PhaseReport {
  const obs = p.observations;
  const accepted = obs.filter((o) => o.state === 'accepted');
  const healthy = obs.filter((o) => o.kind === 'healthy');
  const chaos = obs.filter((o) => o.kind === 'chaos');
  const byMode: PhaseReport['chaos']['by_mode'] = {};
  let unexpected = 0;
  for (const o of chaos.filter((c) => c.state === 'accepted')) {
    const want = CHAOS_EXPECTED[o.mode!] ?? null;
    const m = (byMode[o.mode!] ??= { runs: 0, expected: want && outcomeName(want.status, want.code), outcomes: {}, as_expected: want ? 0 : null });
    m.runs++;
    const outcome = o.terminalMs === null ? 'unfinished' : outcomeName(o.status, o.code);
    m.outcomes[outcome] = (m.outcomes[outcome] ?? 0) + 1;
    if (!want) continue;
    if (outcome === m.expected) m.as_expected!++;
    else unexpected++;
  }
  const seconds = p.durationMs / 1000;
  const finished = accepted.filter((o) => o.terminalMs !== null);
  const pick = (key: 'ackMs' | 'firstEventMs' | 'startedMs' | 'terminalMs', from: readonly RunObservation[] = accepted) =>
    percentiles(from.map((o) => o[key]).filter((v): v is number => v !== null));
  return {
    name: p.name,
    chaos_share: p.chaos,
    started_at: p.startedAt.toISOString(),
    duration_s: round(seconds, 3)!,
    stopped_by_time: p.stoppedByTime,
    runs: countRuns(obs),
    healthy: { ...countRuns(healthy), not_completed_correctly: healthy.filter((o) => healthyFault(o) !== null).length },
    chaos: { ...countRuns(chaos), by_mode: byMode, unexpected },
    // Refusals are acknowledgements too; the other latencies exist only for accepted runs.
    latency_ms: { ack: pick('ackMs', obs), first_event: pick('firstEventMs'), agent_started: pick('startedMs'), terminal: pick('terminalMs') },
    healthy_terminal_latency_ms: pick('terminalMs', accepted.filter((o) => o.kind === 'healthy' && o.status === 'completed')),
    throughput: {
      runs_per_s: seconds > 0 ? round(finished.length / seconds) : null,
      completed_per_s: seconds > 0 ? round(finished.filter((o) => o.status === 'completed').length / seconds) : null,
      events_received: p.counters.events,
      events_per_s: seconds > 0 ? round(p.counters.events / seconds) : null,
    },
  };
}

export function addCounts(list: readonly RunCounts[]): RunCounts {
  const merge = (key: 'failed_by_code' | 'refused') => {
    const out: Record<string, number> = {};
    for (const c of list) for (const [k, v] of Object.entries(c[key])) out[k] = (out[k] ?? 0) + v;
    return out;
  };
  const total = (key: 'attempted' | 'accepted' | 'completed' | 'failed_total' | 'unfinished' | 'refused_total' | 'ack_errors') => sum(list.map((c) => c[key]));
  return {
    attempted: total('attempted'),
    accepted: total('accepted'),
    completed: total('completed'),
    failed_total: total('failed_total'),
    failed_by_code: merge('failed_by_code'),
    unfinished: total('unfinished'),
    refused_total: total('refused_total'),
    refused: { OVERLOADED: 0, RATE_LIMITED: 0, ...merge('refused') },
    ack_errors: total('ack_errors'),
  };
}

export function buildReport(input: {
  opts: LoadOptions;
  startedAt: Date;
  finishedAt: Date;
  phases: PhaseResult[];
  isolation: IsolationReport;
  server: ServerReport;
  interrupted: boolean;
}): LoadReport {
  const { opts, phases } = input;
  const reports = phases.map(phaseReport);
  const all = phases.flatMap((p) => p.observations);
  const faults = all.map((o) => ({ o, why: healthyFault(o) })).filter((f) => f.why !== null);
  const withChaos = reports.find((r) => r.chaos_share > 0) ?? null;
  const withoutChaos = reports.find((r) => r.chaos_share === 0) ?? null;
  const lat = (r: PhaseReport | null) => (r ? r.healthy_terminal_latency_ms : null);
  const chaosAccepted = sum(reports.map((r) => r.chaos.accepted));
  const containment: LoadReport['containment'] = {
    healthy_runs: sum(reports.map((r) => r.healthy.accepted)),
    healthy_not_completed: faults.length,
    healthy_failure_samples: faults.slice(0, 10).map(({ o, why }) => ({ phase: o.phase, user: o.user, run_id: o.runId, status: o.status, code: o.code, why: why! })),
    healthy_terminal_latency_ms: { with_chaos: lat(withChaos), without_chaos: lat(withoutChaos) },
    latency_ratio:
      withChaos && withoutChaos
        ? {
            p50: ratio(withChaos.healthy_terminal_latency_ms.p50, withoutChaos.healthy_terminal_latency_ms.p50),
            p95: ratio(withChaos.healthy_terminal_latency_ms.p95, withoutChaos.healthy_terminal_latency_ms.p95),
            p99: ratio(withChaos.healthy_terminal_latency_ms.p99, withoutChaos.healthy_terminal_latency_ms.p99),
          }
        : null,
    chaos_runs: chaosAccepted,
    chaos_unexpected_outcomes: sum(reports.map((r) => r.chaos.unexpected)),
  };
  const notes: string[] = [];
  const runs = addCounts(reports.map((r) => r.runs));
  if (runs.accepted === 0) notes.push('no run was accepted');
  if (containment.healthy_not_completed > 0) notes.push(`${containment.healthy_not_completed} healthy run(s) did not complete correctly`);
  if (input.isolation.violations > 0) notes.push(`${input.isolation.violations} isolation fault(s) seen by clients`);
  if (containment.chaos_unexpected_outcomes > 0) notes.push(`${containment.chaos_unexpected_outcomes} chaos run(s) ended differently than their mode should`);
  if (phases.some((p) => p.stoppedByTime)) notes.push('a phase hit --max-time before its run count');
  if (input.interrupted) notes.push('interrupted (Ctrl-C): fewer runs than asked');
  const containmentOk = containment.healthy_not_completed === 0;
  const isolationOk = input.isolation.violations === 0;
  return {
    tool: 'atoll-load',
    version: 1,
    target: opts.url,
    started_at: input.startedAt.toISOString(),
    finished_at: input.finishedAt.toISOString(),
    duration_s: round((input.finishedAt.getTime() - input.startedAt.getTime()) / 1000, 3)!,
    options: { ...opts, jwtSecret: opts.jwtSecret ? '[set]' : null },
    phases: reports,
    runs,
    containment,
    isolation: input.isolation,
    server: input.server,
    verdict: { ok: containmentOk && isolationOk && runs.accepted > 0, containment_ok: containmentOk, isolation_ok: isolationOk, notes },
  };
}
