/** The markdown `npm run bench -- --cluster` prints (and the README quotes). */
import { machineLine } from './machine.js';
import { CLUSTER_VARIANTS } from './cluster-throughput.js';
import type { ClusterBenchReport } from './report-types.js';

const num = (v: number | null | undefined, digits = 1) => (v == null ? 'n/a' : v >= 100 ? Math.round(v).toString() : v.toFixed(digits));
const x = (v: number | null | undefined) => (v == null ? 'n/a' : `${v.toFixed(2)}×`);
const s = (ms: number | null | undefined) => (ms == null ? 'n/a' : `${(ms / 1000).toFixed(2)} s`);

export function renderClusterMarkdown(r: ClusterBenchReport): string {
  const st = r.settings;
  const one = r.throughput.one_node?.runs_per_s ?? null;
  const rows = CLUSTER_VARIANTS.flatMap((v) => {
    const t = r.throughput[v.key];
    if (!t) return [];
    const vsOne = t.runs_per_s === null || one === null || one === 0 ? null : t.runs_per_s / one;
    return [`| ${v.label} | ${t.nodes} | ${t.cells_per_node} × ${t.threads_per_node} | ${num(t.runs_per_s)} | ${num(t.latency_p50_ms, 2)} | ${num(t.latency_p95_ms, 2)} | ${t.failed} | ${t.threads_alive_after ?? 'n/a'} | ${t.leases_lost ?? '–'} | ${x(vsOne)} |`];
  });
  const l = r.event_latency;
  const latencyRow = (name: string, p: typeof l.within_ms) => `| ${name} | ${p.count} | ${num(p.p50, 2)} | ${num(p.p99, 2)} | ${num(p.max, 2)} |`;
  const takeoverRows = r.takeover.map((t) => {
    const runs = t.samples.reduce((n, x) => n + x.runs_restarted, 0);
    const held = t.samples.reduce((n, x) => n + x.runs_on_victim, 0);
    return `| ${t.lease_ms} | ${s(t.bound_ms)} | ${t.rounds} | ${runs} of ${held} | ${s(t.restarted_ms.p50)} | ${s(t.restarted_ms.p99)} | ${s(t.agent_started_ms.p50)} | ${s(t.agent_started_ms.p99)} | ${s(t.socket_ms.p50)} | ${s(t.socket_ms.p99)} | ${t.over_bound} |`;
  });
  const ra = r.ratios;
  return [
    `Machine: ${machineLine(r.machine)}.`,
    `Workload: \`scripts/bench-agents/steps.mjs\` (an \`agent_thinking\` and a \`partial_result\` event, then returns). Medians of ${st.reps} repetitions of ${st.runs} runs ` +
      `or ${st.round_s} s, whichever comes first, the rows taking turns, each repetition on a cluster started for it (warm-up: ${st.warmup} runs and ${st.warmup_s} s); ` +
      `${st.clients} socket.io clients × ${st.inflight} runs in flight, the clients dealt round robin over the nodes. ` +
      `Every row on a fresh PostgreSQL database (${st.postgresql}); the cluster rows with a fresh Redis key prefix (${st.redis}), \`NODE_LEASE_MS=${st.lease_ms}\`. ` +
      `Latency: client send → terminal event.${r.quick ? ' **--quick smoke run: not meaningful figures.**' : ''}`,
    '',
    '| design | nodes | cells × threads per node | runs/s | p50 ms | p95 ms | failed | threads alive after | leases lost | runs/s vs one node |',
    '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
    ...rows,
    '',
    `Three nodes / one node = **${num(ra.three_nodes_over_one_node, 3)}** (goal: at least 0.9; by repetition: ${ra.three_nodes_over_one_node_per_rep.map((v) => num(v, 3)).join(', ')}), three default nodes / one node = ${num(ra.three_nodes_same_per_node_over_one_node, 3)}; ` +
      `one node in cluster mode / the same node without \`REDIS_URL\` = ${num(ra.one_node_cluster_over_single_node, 3)}. ` +
      `Threads alive after: worker threads of all nodes once measured (\`atoll_threads_alive\`; with \`THREAD_REUSE=same_user\` a cell keeps threads per user it served, up to its burst limit).`,
    '',
    `Event latency: one user with a socket on each of ${l.nodes} nodes (the three-node row's cluster) starts ${l.runs} runs through them in turn, ${l.inflight} at a time; ` +
      `each event of a run reaches the socket on the node that executed it (within) and those on the others (across). Envelope \`timestamp\` → arrival, ms ` +
      `(runs by executing node: ${Object.entries(l.runs_by_node).map(([n, c]) => `${n} ${c}`).join(', ')}${l.runs_unattributed ? `, unattributed ${l.runs_unattributed}` : ''}; ` +
      `${l.runs_unheard ? `runs whose end no socket heard ${l.runs_unheard} (${l.unheard.map((u) => `${u.run_id} ${u.status}`).join(', ')}); ` : ''}` +
      `missing within ${l.missing_within}, across ${l.missing_across}; duplicates ${l.duplicates}).`,
    '',
    '| path | events | p50 ms | p99 ms | max ms |',
    '|---|---:|---:|---:|---:|',
    latencyRow('within the node that executed the run', l.within_ms),
    latencyRow('across nodes', l.across_ms),
    latencyRow('across minus within, the same event', l.across_minus_within_ms),
    '',
    `Takeover after \`SIGKILL\` of a node (front and cells; ${r.takeover[0]?.nodes ?? 3} nodes of 1 cell × 2 threads): each round starts slow runs (\`chaos\`, \`slow\`, 60 s), two on the victim and one on each other node, ` +
      `kills the victim, then reads each of its runs' event log: kill → \`run_restarted\` written (by the node that took the lease over), kill → \`agent_started\` again (on the node running it again), ` +
      `kill → \`run_restarted\` heard by a socket on a surviving node. Bound: \`NODE_LEASE_MS\` + one sweep (\`NODE_LEASE_MS\` / 5).`,
    '',
    '| `NODE_LEASE_MS` | bound | rounds | runs restarted | restarted p50 | p99 | started again p50 | p99 | heard p50 | p99 | over bound |',
    '|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
    ...takeoverRows,
    '',
    ...(r.node_start_failures.length ? [`Node starts that failed and were tried again (other work starving the machine): ${r.node_start_failures.join('; ')}.`, ''] : []),
  ].join('\n');
}
