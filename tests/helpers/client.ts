/** A real socket.io client plus the HTTP API, as one user of Atoll. */
import { io, type Socket } from 'socket.io-client';
import type { RunEventEnvelope } from '../../server/protocol/events';

/** The wire envelope, with a payload loose enough for assertions on any event type. */
export type Envelope = Omit<RunEventEnvelope, 'payload'> & { payload: Record<string, any> };

export async function devLogin(url: string, userId: string): Promise<string> {
  const res = await fetch(`${url}/v1/auth/dev-login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ user_id: userId }) });
  if (res.status !== 200) throw new Error(`dev-login failed: ${res.status} ${await res.text()}`);
  return ((await res.json()) as { token: string }).token;
}

export class UserClient {
  readonly events: Envelope[] = [];
  private waiters: (() => void)[] = [];

  private constructor(
    readonly url: string,
    readonly userId: string,
    readonly token: string,
    readonly socket: Socket,
  ) {
    socket.onAny((_name: string, envelope: Envelope) => {
      if (envelope && typeof envelope === 'object' && 'seq' in envelope) {
        this.events.push(envelope);
        this.waiters.splice(0).forEach((w) => w());
      }
    });
  }

  static async connect(url: string, userId: string): Promise<UserClient> {
    const token = await devLogin(url, userId);
    const socket = io(url, { auth: { token }, transports: ['websocket'], reconnection: false, forceNew: true });
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', () => resolve());
      socket.once('connect_error', (err) => reject(err));
    });
    return new UserClient(url, userId, token, socket);
  }

  async start(payload: Record<string, unknown>): Promise<{ run_id: string; thread_id: string }> {
    const ack = await this.socket.timeout(10_000).emitWithAck('start_agent', payload);
    if (ack.error) throw Object.assign(new Error(`start_agent refused: ${ack.error.code} ${ack.error.message}`), { ack });
    return ack;
  }

  ack(event: string, payload: unknown): Promise<any> {
    return this.socket.timeout(10_000).emitWithAck(event, payload);
  }

  runEvents(runId: string): Envelope[] {
    return this.events.filter((e) => e.run_id === runId);
  }

  /** Resolves with the run's events once its agent_completed has arrived. */
  async waitForRun(runId: string, timeoutMs = 30_000): Promise<Envelope[]> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const events = this.runEvents(runId);
      if (events.some((e) => e.type === 'agent_completed')) return events;
      if (Date.now() > deadline) throw new Error(`run ${runId} did not finish in ${timeoutMs} ms; got ${events.map((e) => e.type).join(',')}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, 100);
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  async waitForEvent(runId: string, type: string, timeoutMs = 15_000): Promise<Envelope> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const e = this.runEvents(runId).find((x) => x.type === type);
      if (e) return e;
      if (Date.now() > deadline) throw new Error(`no ${type} for run ${runId} in ${timeoutMs} ms`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  async http(method: string, path: string, body?: unknown, token: string | null = this.token): Promise<{ status: number; body: any; headers: Headers }> {
    return httpCall(this.url, method, path, body, token);
  }

  close(): void {
    this.socket.close();
  }
}

export async function httpCall(url: string, method: string, path: string, body?: unknown, token: string | null = null) {
  const headers: Record<string, string> = {};
  if (token) headers.authorization = `Bearer ${token}`;
  if (body !== undefined) headers['content-type'] = 'application/json';
  const res = await fetch(url + path, { method, headers, body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body) });
  const text = await res.text();
  let parsed: any = text;
  try {
    parsed = JSON.parse(text);
  } catch {
    // not JSON (metrics)
  }
  return { status: res.status, body: parsed, headers: res.headers };
}

export function terminal(events: Envelope[]): Envelope {
  const t = events.filter((e) => e.type === 'agent_completed');
  if (t.length !== 1) throw new Error(`expected exactly one agent_completed, got ${t.length}`);
  return t[0];
}

/** Reads one sample from Prometheus text (sums across label sets that match). */
export function metricValue(text: string, name: string, labels: Record<string, string> = {}): number {
  let sum = 0;
  let found = false;
  for (const line of text.split('\n')) {
    if (line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)/.exec(line);
    if (!m || m[1] !== name) continue;
    const labelText = m[2] ?? '';
    if (Object.entries(labels).every(([k, v]) => labelText.includes(`${k}="${v}"`))) {
      sum += Number(m[3]);
      found = true;
    }
  }
  return found ? sum : NaN;
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Polls until check() returns true or the time is up; returns the last result. */
export async function eventually(check: () => Promise<boolean> | boolean, timeoutMs = 10_000, everyMs = 100): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return true;
    if (Date.now() > deadline) return false;
    await sleep(everyMs);
  }
}
