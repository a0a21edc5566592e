/**
 * `npm run bench -- --cluster` in its short mode (PostgreSQL and Redis): it runs to the end and its report has every
 * field, with figures that are consistent (counts add up, percentiles ordered, ratios match) and the cluster's
 * outcomes the contract promises (every run completed, each killed node's runs restarted once, for node_lost). No
 * assertion on timings: the machine is shared.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { runToExit } from '../helpers/run-to-exit';
import { ROOT } from '../helpers/server';

const BENCH = path.join(ROOT, 'dist/scripts/bench.js');
const POSTGRESQL_SERVER = `${(process.env.ATOLL_TEST_POSTGRESQL || 'postgresql://postgres@127.0.0.1:5432').replace(/\/+$/, '')}/postgres`;

function expectPercentiles(p: any, count?: number) {
  expect(Object.keys(p).sort()).toEqual(['count', 'max', 'mean', 'p50', 'p95', 'p99']);
  if (count !== undefined) expect(p.count).toBe(count);
  if (p.count === 0) return;
  expect(p.p50).toBeLessThanOrEqual(p.p95);
  expect(p.p95).toBeLessThanOrEqual(p.p99);
  expect(p.p99).toBeLessThanOrEqual(p.max);
}

let dir: string;
beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'atoll-cluster-bench-'));
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

test('bench --cluster --quick: one node against three, event latency, a takeover; figures consistent, a markdown table', async () => {
  const out = path.join(dir, 'cluster.json');
  const md = path.join(dir, 'cluster.md');
  const res = await runToExit(BENCH, ['--cluster', '--quick', '--postgresql', POSTGRESQL_SERVER, '--out', out, '--markdown', md], { cwd: ROOT, env: { PATH: process.env.PATH ?? '', TMPDIR: os.tmpdir() }, timeoutMs: 170_000 });
  // On failure, what the bench said is in the message.
  expect({ code: res.code, stderr: res.code === 0 ? '' : res.stderr.slice(-3000) }).toEqual({ code: 0, stderr: '' });
  const r = JSON.parse(fs.readFileSync(out, 'utf8'));
  expect(Object.keys(r).sort()).toEqual(['duration_s', 'event_latency', 'finished_at', 'machine', 'markdown', 'mode', 'node_start_failures', 'quick', 'ratios', 'settings', 'started_at', 'takeover', 'throughput', 'tool', 'version']);
  expect(r).toMatchObject({ tool: 'atoll-bench', mode: 'cluster', quick: true });
  expect(r.settings.postgresql).toBe(POSTGRESQL_SERVER);
  expect(r.settings.takeover_lease_ms).toEqual([r.settings.lease_ms]);

  // The quick run skips the three default nodes.
  expect(Object.keys(r.throughput).sort()).toEqual(['one_node', 'single_node_postgresql', 'three_nodes']);
  for (const v of Object.values(r.throughput) as any[]) {
    expect(v.rounds).toHaveLength(r.settings.reps);
    for (const round of v.rounds) {
      expect(round.runs).toBeGreaterThan(0);
      expect(round.completed + round.failed).toBe(round.runs);
      // Every run completes, wherever it executed and whichever node its client is on.
      expect(round.failed).toBe(0);
      expectPercentiles(round.latency_ms, round.completed);
    }
    expect(v.runs_per_s).toBeGreaterThan(0);
  }
  expect(r.throughput.three_nodes).toMatchObject({ nodes: 3, cells_per_node: 1, threads_per_node: 2, cluster: true });
  expect(r.throughput.single_node_postgresql).toMatchObject({ nodes: 1, cluster: false });
  const t = r.throughput;
  expect(r.ratios.three_nodes_over_one_node).toBeCloseTo(t.three_nodes.runs_per_s / t.one_node.runs_per_s, 3);
  expect(r.ratios.one_node_cluster_over_single_node).toBeCloseTo(t.one_node.runs_per_s / t.single_node_postgresql.runs_per_s, 3);
  expect(r.ratios.three_nodes_same_per_node_over_one_node).toBeNull();
  expect(r.ratios.three_nodes_over_one_node_per_rep).toHaveLength(r.settings.reps);
  r.ratios.three_nodes_over_one_node_per_rep.forEach((v: number, i: number) => expect(v).toBeCloseTo(t.three_nodes.rounds[i].runs_per_s / t.one_node.rounds[i].runs_per_s, 3));

  const l = r.event_latency;
  expect(l.nodes).toBe(3);
  expect(l.runs).toBe(r.settings.latency_runs);
  expect(Object.values(l.runs_by_node).reduce((a: number, b: any) => a + b, 0) + l.runs_unattributed).toBe(l.runs);
  expect(l.unheard).toEqual([]);
  expect(l.runs_unheard).toBe(0);
  expect(l.events).toBeGreaterThan(0);
  // Each counted event: one socket within, one across per other node; the socket on the executing node misses none.
  expectPercentiles(l.within_ms, l.events - l.missing_within);
  expectPercentiles(l.across_ms, l.events * (l.nodes - 1) - l.missing_across);
  expect(l.missing_within).toBe(0);
  expect(l.duplicates).toBe(0);

  expect(r.takeover).toHaveLength(1);
  const k = r.takeover[0];
  expect(k).toMatchObject({ lease_ms: r.settings.lease_ms, nodes: 3, rounds: 1, sweep_ms: r.settings.lease_ms / 5, bound_ms: r.settings.lease_ms * 1.2 });
  expect(k.samples).toHaveLength(1);
  const s = k.samples[0];
  // The victim held runs, each ran again elsewhere exactly once, because its node was lost; the others' did not.
  expect(s.runs_on_victim).toBeGreaterThanOrEqual(1);
  expect(s.runs_restarted).toBe(s.runs_on_victim);
  expect(s.reasons).toEqual(Array(s.runs_restarted).fill('node_lost'));
  expect(s.survivors_restarted).toBe(0);
  expect(s.not_cancelled).toBe(0);
  expect(s.restarted_ms).toHaveLength(s.runs_restarted);
  expect(s.agent_started_ms).toHaveLength(s.runs_restarted);
  s.restarted_ms.forEach((ms: number, i: number) => {
    expect(ms).toBeGreaterThan(0);
    // Written by the node that runs it again, after the takeover wrote run_restarted.
    expect(s.agent_started_ms[i]).toBeGreaterThanOrEqual(ms);
  });
  expectPercentiles(k.restarted_ms, s.runs_restarted);

  expect(fs.readFileSync(md, 'utf8')).toBe(r.markdown);
  expect(res.stdout).toContain(r.markdown);
  expect(r.markdown).toContain(`Machine: ${os.cpus().length} cores`);
  // Each table's header and its rows: three throughput rows, three latency paths, one takeover lease.
  const rows = r.markdown.split('\n').filter((line: string) => /^\| .* \|$/.test(line));
  expect(rows).toHaveLength(1 + 3 + 1 + 3 + 1 + 1);
}, 180_000);
