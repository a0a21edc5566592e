/** A real socket.io client plus the HTTP API, as one user of Atoll. */
import { io, type Socket } from 'socket.io-client';
import type { RunEventEnvelope } from '../../protocol/events';

/** The wire envelope, with a payload loose enough for assertions on any event type (a merged one adds coalesced_from_seq). */
export type Envelope = Omit<RunEventEnvelope, 'payload'> & { payload: Record<string, any>; coalesced_from_seq?: number };

export async function devLogin(url: string, userId: string): Promise<string> {
  const res = await fetch(`${url}/v1/auth/dev-login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ user_id: userId }) });
  if (res.status !== 200) throw new Error(`dev-login failed: ${res.status} ${await res.text()}`);
  return ((await res.json()) as { token: string }).token;
}

/** How long waitForRun keeps listening after a run's terminal event, so a duplicate or late event is seen. */
const SETTLE_MS = 100;

/**
 * Every event of every run is recorded (`events`); the client also checks the wire contract on each arrival:
 * exactly one `agent_completed` per run, nothing after it, and `seq` strictly growing per run on this socket
 * (a coalesced envelope covers `coalesced_from_seq..seq`). A breach is recorded in `violations` and fails the
 * test: the next waitForRun/waitForEvent/runEvents throws it, and `close()` reports one that arrived after the
 * last of those.
 * Gaps are not breaches: a lagging socket legitimately skips events until it resyncs.
 */
export class UserClient {
  readonly events: Envelope[] = [];
  readonly violations: string[] = [];
  private reported = 0;
  private waiters: (() => void)[] = [];
  /** Per run: the highest seq this socket has received, and whether its terminal event has arrived. */
  private seen = new Map<string, { lastSeq: number; ended: boolean }>();

  private constructor(
    readonly url: string,
    readonly userId: string,
    readonly token: string,
    readonly socket: Socket,
  ) {
    socket.onAny((_name: string, envelope: Envelope) => {
      if (envelope && typeof envelope === 'object' && 'seq' in envelope) {
        this.check(envelope);
        this.events.push(envelope);
        this.waiters.splice(0).forEach((w) => w());
      }
    });
  }

  private check(e: Envelope): void {
    const state = this.seen.get(e.run_id) ?? { lastSeq: 0, ended: false };
    const first = typeof e.coalesced_from_seq === 'number' ? e.coalesced_from_seq : e.seq;
    const where = `run ${e.run_id}: ${e.type} seq ${e.seq}`;
    if (state.ended) this.violations.push(`${where} arrived after the run's agent_completed`);
    else if (!(first > state.lastSeq) || !(e.seq >= first)) this.violations.push(`${where} does not follow seq ${state.lastSeq} (repeated or backwards)`);
    if (e.type === 'agent_completed') state.ended = true;
    state.lastSeq = Math.max(state.lastSeq, e.seq);
    this.seen.set(e.run_id, state);
  }

  /**
   * Throws the contract breaches seen since the last time it threw (all runs of this client): each breach
   * fails the check that first sees it, not every later one (violations keeps them all).
   */
  assertClean(): void {
    const fresh = this.violations.slice(this.reported);
    this.reported = this.violations.length;
    if (fresh.length) throw new Error(`event contract broken for user ${this.userId}:\n  ${fresh.join('\n  ')}`);
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
    this.assertClean();
    return this.events.filter((e) => e.run_id === runId);
  }

  /**
   * Resolves with the run's events once its agent_completed has arrived and SETTLE_MS have passed without a
   * breach (a second terminal event or a late event would land in that window and fail here).
   */
  async waitForRun(runId: string, timeoutMs = 30_000): Promise<Envelope[]> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const events = this.runEvents(runId);
      if (events.some((e) => e.type === 'agent_completed')) {
        await sleep(SETTLE_MS);
        return this.runEvents(runId);
      }
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

  /**
   * Closes the socket; a breach not yet reported fails the test from the next turn (an uncaught error, which
   * jest pins on the running test or hook), so the caller's cleanup (other clients, server.stop) still runs.
   */
  close(): void {
    this.socket.close();
    try {
      this.assertClean();
    } catch (err) {
      setImmediate(() => {
        throw err;
      });
    }
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
