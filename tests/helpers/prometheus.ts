/**
 * Starts a real Prometheus (Debian's `prometheus` package, /usr/bin/prometheus; .ci/run installs it) on a free
 * loopback port with a throw-away configuration and storage, scraping the given targets and evaluating the
 * given rule files, and reads its HTTP API.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { stringify as stringifyYaml } from 'yaml';
import { eventually } from './client';

export interface PrometheusAlert {
  labels: Record<string, string>;
  state: 'pending' | 'firing';
  value: string;
}

export interface TestPrometheus {
  url: string;
  /** An instant query's result vector. */
  query(expr: string): Promise<{ metric: Record<string, string>; value: [number, string] }[]>;
  /** Active alerts (pending or firing), from /api/v1/alerts. */
  alerts(): Promise<PrometheusAlert[]>;
  /** Every loaded rule with its health and last error, from /api/v1/rules. */
  rules(): Promise<{ name: string; type: string; health: string; lastError?: string; lastEvaluation: string }[]>;
  /** Each scrape target's health and last error, from /api/v1/targets. */
  targets(): Promise<{ scrapeUrl: string; health: string; lastError: string }[]>;
  logs(): string;
  stop(): Promise<void>;
}

/** A port nothing listens on now (Prometheus cannot be told to pick one and say which). */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = net.createServer();
    probe.once('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const { port } = probe.address() as net.AddressInfo;
      probe.close(() => resolve(port));
    });
  });
}

export async function startPrometheus(options: { targets: string[]; ruleFiles: string[]; intervalS: number }): Promise<TestPrometheus> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'atoll-prometheus-'));
  const interval = `${options.intervalS}s`;
  const config = {
    global: { scrape_interval: interval, scrape_timeout: interval, evaluation_interval: interval },
    rule_files: options.ruleFiles,
    // job "atoll", as deploy/prometheus/prometheus.yml names it (AtollNodeDown selects it).
    scrape_configs: [{ job_name: 'atoll', static_configs: [{ targets: options.targets }] }],
  };
  fs.writeFileSync(path.join(dir, 'prometheus.yml'), stringifyYaml(config));
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const proc = spawn(
    'prometheus',
    [`--config.file=${path.join(dir, 'prometheus.yml')}`, `--storage.tsdb.path=${path.join(dir, 'data')}`, `--web.listen-address=127.0.0.1:${port}`, '--log.level=warn'],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let logs = '';
  proc.stderr!.setEncoding('utf8').on('data', (c: string) => (logs += c));
  const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
  const stop = async () => {
    if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGTERM');
    await exited;
    fs.rmSync(dir, { recursive: true, force: true });
  };
  const ready = await eventually(async () => {
    if (proc.exitCode !== null) return true;
    return (await fetch(`${url}/-/ready`).catch(() => null))?.status === 200;
  }, 30_000, 100);
  if (!ready || proc.exitCode !== null) {
    await stop();
    throw new Error(`prometheus did not start:\n${logs}`);
  }
  const api = async <T>(p: string): Promise<T> => {
    const body = (await (await fetch(`${url}${p}`)).json()) as { status: string; data: T; error?: string };
    if (body.status !== 'success') throw new Error(`prometheus ${p}: ${body.error}`);
    return body.data;
  };
  return {
    url,
    query: async (expr) => (await api<{ result: { metric: Record<string, string>; value: [number, string] }[] }>(`/api/v1/query?query=${encodeURIComponent(expr)}`)).result,
    alerts: async () => (await api<{ alerts: PrometheusAlert[] }>('/api/v1/alerts')).alerts,
    rules: async () =>
      (await api<{ groups: { rules: { name: string; type: string; health: string; lastError?: string; lastEvaluation: string }[] }[] }>('/api/v1/rules')).groups.flatMap((g) => g.rules),
    targets: async () => (await api<{ activeTargets: { scrapeUrl: string; health: string; lastError: string }[] }>('/api/v1/targets')).activeTargets,
    logs: () => logs,
    stop,
  };
}
