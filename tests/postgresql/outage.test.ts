/**
 * The database goes away mid-burst and comes back: a TCP proxy between a real Atoll front and PostgreSQL cuts
 * every connection and refuses new ones, then lets them through again. What must hold:
 * - every run that was acknowledged (HTTP 202, socket ack) completes exactly once with its whole event log
 *   (seq 1..n, no gap, no duplicate, one terminal event), read back after recovery;
 * - every request refused meanwhile got DB_UNAVAILABLE (HTTP 503 + Retry-After, ack with retry_after_ms) and left
 *   nothing in the database; reads answer DB_UNAVAILABLE, never INTERNAL;
 * - /readyz names the database while it is down and is ready again afterwards; why it is down (the driver's error,
 *   which names hosts and ports) only to the holder of METRICS_TOKEN; the front never crashes.
 * The outage lasts OUTAGE_MS at least, and until each of those refusals was seen: every other wait is for a state.
 * Twice, on one server: connections refused (reset at once), then connections that hang unanswered.
 */
import { UserClient, eventually, httpCall, sleep, type Envelope } from '../helpers/client';
import { testDatabase, type TestDatabase } from '../helpers/pg-database';
import { expectPersistedTerminal, persistedEvents } from '../helpers/run-checks';
import { FIXTURE_AGENTS, startServer, type TestServer } from '../helpers/server';
import { startTcpProxy, type TcpProxy } from '../helpers/tcp-proxy';

const OUTAGE_MS = 4_000;
/** Each run streams PARTS parts DELAY_MS apart: about 1.5 s of work, so runs are queued, running and finishing across the cut. */
const PARTS = 30;
const DELAY_MS = 50;
const BURST = 16;
const METRICS_TOKEN = 'outage-test-metrics-token-0123456789';

type Outcome = { via: 'http' | 'socket'; text: string; correlationId: string | null } & ({ acked: true; runId: string } | { acked: false; status: number; code: string; retryAfter: string | null; retryAfterMs?: number });

let db: TestDatabase;
let proxy: TcpProxy;
let server: TestServer;
let user: UserClient;

beforeAll(async () => {
  db = await testDatabase('outage');
  proxy = await startTcpProxy(5432);
  server = await startServer({
    DATABASE_URL: db.urlVia(proxy.port),
    AGENTS_DIR: FIXTURE_AGENTS,
    CELLS: '2',
    THREADS_PER_CELL: '2',
    RUN_TIMEOUT_MS: '120000',
    METRICS_TOKEN,
  });
  user = await UserClient.connect(server.url, 'outage-user');
});
afterAll(async () => {
  user?.close();
  await server?.stop();
  await proxy?.close();
  await db?.drop();
});

const readyz = async (token: string | null = null) => (await httpCall(server.url, 'GET', '/readyz', undefined, token)).body as { status: string; failing: string[]; checks: { database: string } };

/** What a burst through one outage measured, for the report. */
const measured: Record<string, unknown>[] = [];

/**
 * A burst of runs, the database cut while they run (`cut`), requests all through the outage, the database back;
 * then every check of this file's header.
 */
async function burstThroughOutage(label: string, cut: () => void): Promise<void> {
  const logsBefore = server.logs.length;
  const eventsBefore = user.events.length;
  // Threads for the HTTP runs (POST /v1/threads/:id/runs needs one), made while the database is up.
  const threads: string[] = [];
  for (let i = 0; i < BURST; i++) {
    const res = await user.http('POST', '/v1/threads', { title: `${label} thread ${i}` });
    expect(res.status).toBe(201);
    threads.push(res.body.id);
  }
  let n = 0;
  const outcomes: Outcome[] = [];
  const input = (text: string) => ({ text, parts: PARTS, delay: DELAY_MS });

  async function viaHttp(): Promise<Outcome> {
    const i = n++;
    const text = `${label}-http-${i}`;
    const correlationId = `corr-${text}`;
    const res = await user.http('POST', `/v1/threads/${threads[i % threads.length]}/runs`, { agent: 'streamer', input: input(text), correlation_id: correlationId });
    const o: Outcome =
      res.status === 202
        ? { via: 'http', text, correlationId, acked: true, runId: res.body.id }
        : { via: 'http', text, correlationId, acked: false, status: res.status, code: res.body?.error?.code, retryAfter: res.headers.get('retry-after') };
    outcomes.push(o);
    return o;
  }
  /** Every other one without a correlation id: its acceptance is a write alone, with no read before it. */
  async function viaSocket(): Promise<Outcome> {
    const i = n++;
    const text = `${label}-socket-${i}`;
    const correlationId = i % 4 === 1 ? `corr-${text}` : null;
    const ack = await user.ack('start_agent', { agent: 'streamer', input: input(text), ...(correlationId ? { correlation_id: correlationId } : {}) });
    const o: Outcome = ack.error
      ? { via: 'socket', text, correlationId, acked: false, status: 0, code: ack.error.code, retryAfter: null, retryAfterMs: ack.error.retry_after_ms }
      : { via: 'socket', text, correlationId, acked: true, runId: ack.run_id };
    outcomes.push(o);
    return o;
  }
  const acked = () => outcomes.filter((o): o is Outcome & { acked: true; runId: string } => o.acked);
  const refused = () => outcomes.filter((o): o is Outcome & { acked: false; status: number; code: string; retryAfter: string | null } => !o.acked);

  // The burst: half over HTTP, half over the socket, all acknowledged while the database is up.
  await Promise.all(Array.from({ length: BURST }, (_, i) => (i % 2 ? viaSocket() : viaHttp())));
  expect(refused()).toEqual([]);
  const firstRun = acked()[0]!.runId;
  // Cut once runs are streaming (events are being written), with more still queued behind them.
  const burstIds = new Set(acked().map((o) => o.runId));
  const streaming = () => new Set(user.events.slice(eventsBefore).filter((e) => e.type === 'partial_result' && burstIds.has(e.run_id)).map((e) => e.run_id)).size;
  expect(await eventually(() => streaming() >= 2, 30_000, 20)).toBe(true);

  cut();
  const cutAt = Date.now();
  // Requests keep coming during the outage, over both ways (bounded: one of each per 100 ms).
  let firing = true;
  const firingLoop = (async () => {
    for (let k = 0; firing && k < 400; k++) {
      await Promise.all([viaHttp(), viaSocket()]);
      await sleep(100);
    }
  })();

  expect(await eventually(async () => (await readyz()).failing.includes('database'), 20_000, 50)).toBe(true);
  const [whileDown, toOperator] = await Promise.all([readyz(), readyz(METRICS_TOKEN)]);
  expect(whileDown.status).toBe('not_ready');
  expect(whileDown.checks.database).toBe('unreachable');
  expect(toOperator.checks.database).toMatch(/^unreachable: \S/);

  // Reads answer DB_UNAVAILABLE (503, retryable, Retry-After), never INTERNAL; so does creating a thread.
  const [threadsRead, runRead, eventsRead, messagesRead, newThread, history, subscribe] = await Promise.all([
    user.http('GET', '/v1/threads'),
    user.http('GET', `/v1/runs/${firstRun}`),
    user.http('GET', `/v1/runs/${firstRun}/events`),
    user.http('GET', `/v1/threads/${threads[0]}/messages`),
    user.http('POST', '/v1/threads', { title: `${label}: made during the outage` }),
    user.ack('get_thread_history', { thread_id: threads[0] }),
    user.ack('subscribe_run', { run_id: firstRun, after_seq: 0 }),
  ]);
  for (const [what, res] of Object.entries({ threadsRead, runRead, eventsRead, messagesRead, newThread })) {
    expect({ what, status: res.status, code: res.body?.error?.code, retryAfter: res.headers.get('retry-after') }).toEqual({ what, status: 503, code: 'DB_UNAVAILABLE', retryAfter: '2' });
  }
  expect(history.error).toMatchObject({ code: 'DB_UNAVAILABLE', retry_after_ms: 2000 });
  expect(subscribe.error).toMatchObject({ code: 'DB_UNAVAILABLE', retry_after_ms: 2000 });

  // Down for OUTAGE_MS at least, and until both ways have been refused.
  await eventually(() => Date.now() - cutAt >= OUTAGE_MS && refused().some((o) => o.via === 'http') && refused().some((o) => o.via === 'socket' && !o.correlationId), 60_000, 50);
  const ackedDuringOutage = acked().length - BURST;
  proxy.restore();
  const restoredAt = Date.now();

  expect(await eventually(async () => (await readyz()).status === 'ready', 30_000, 50)).toBe(true);
  const readyAfterMs = Date.now() - restoredAt;
  // Requests are accepted again: let the loop run until a few of each way are acknowledged after the restore.
  const ackedAtRestore = acked().length;
  const ackedSince = (via: string) => acked().slice(ackedAtRestore).filter((o) => o.via === via).length;
  expect(await eventually(() => ackedSince('http') >= 2 && ackedSince('socket') >= 2, 30_000, 50)).toBe(true);
  firing = false;
  await firingLoop;

  // Every acknowledged run completes, exactly once, with its whole log.
  const runs = acked();
  for (const o of runs) {
    const events = await user.waitForRun(o.runId, 120_000);
    expect(events.filter((e) => e.type === 'agent_completed')).toHaveLength(1);
  }
  const completedAfterMs = Date.now() - restoredAt;
  for (const o of runs) {
    const terminalEvent = await expectPersistedTerminal(user, o.runId);
    expect({ run: o.text, status: terminalEvent.payload.status }).toEqual({ run: o.text, status: 'completed' });
    const log = await persistedEvents(user, o.runId);
    const parts = log.filter((e: Envelope) => e.type === 'partial_result').map((e: Envelope) => e.payload.text as string);
    expect(parts).toEqual(Array.from({ length: PARTS }, (_, i) => `${o.text}-${i} `));
    expect(log[0]!.type).toBe('message_received');
    expect(new Set(log.map((e) => e.event_id)).size).toBe(log.length);
  }

  // The database holds exactly the acknowledged runs of this burst, each completed, each with its two messages.
  const rows = await db.query<{ id: string; status: string; messages: number }>(
    `SELECT r.id, r.status, (SELECT count(*)::int FROM "Message" m WHERE m."runId" = r.id) AS messages FROM "Run" r WHERE r.input::jsonb->>'text' LIKE $1`,
    [`${label}-%`],
  );
  expect(rows.map((r) => r.id).sort()).toEqual(runs.map((o) => o.runId).sort());
  expect(rows.filter((r) => r.status !== 'completed' || r.messages !== 2)).toEqual([]);
  // Refused requests: DB_UNAVAILABLE, retryable, with the hint; nothing of theirs was kept.
  const no = refused();
  for (const o of no) {
    if (o.via === 'http') expect({ text: o.text, status: o.status, code: o.code, retryAfter: o.retryAfter }).toEqual({ text: o.text, status: 503, code: 'DB_UNAVAILABLE', retryAfter: '2' });
    else expect({ text: o.text, code: o.code, retryAfterMs: o.retryAfterMs }).toEqual({ text: o.text, code: 'DB_UNAVAILABLE', retryAfterMs: 2000 });
  }
  const texts = no.map((o) => o.text);
  const left = await db.query(
    `SELECT 'message' AS what, content AS text FROM "Message" WHERE content = ANY($1) ` +
      `UNION ALL SELECT 'thread', title FROM "Thread" WHERE title = ANY($1) OR title = $3 ` +
      `UNION ALL SELECT 'run', input FROM "Run" WHERE input::jsonb->>'text' = ANY($1) OR "correlationId" = ANY($2)`,
    [texts, no.flatMap((o) => (o.correlationId ? [o.correlationId] : [])), `${label}: made during the outage`],
  );
  expect(left).toEqual([]);

  // The front never crashed, nor logged a fault; acknowledged writes waited and were committed once it was back.
  expect(server.proc.exitCode).toBeNull();
  expect(server.stderr()).toBe('');
  const logs = server.logs.slice(logsBefore);
  expect(logs.filter((l) => (l.level as number) >= 50 || /unhandled|socket handler failed|write failed/i.test(String(l.msg)))).toEqual([]);
  const back = logs.find((l) => l.msg === 'the database is reachable again; kept writes committed');
  expect(back).toBeDefined();

  measured.push({
    outage: label,
    outage_ms: restoredAt - cutAt,
    ready_after_restore_ms: readyAfterMs,
    kept_writes_committed_after_restore_ms: Date.parse(String(back!.time)) - restoredAt,
    kept_writes_retried: back!.retried_writes,
    all_runs_completed_after_restore_ms: completedAfterMs,
    acked: runs.length,
    acked_before_cut: BURST,
    acked_during_outage: ackedDuringOutage,
    refused_http: no.filter((o) => o.via === 'http').length,
    refused_socket: no.filter((o) => o.via === 'socket').length,
  });
}

test('connections cut and refused mid-burst: acknowledged runs all complete once it is back; refused requests leave nothing', async () => {
  await burstThroughOutage('refused', () => proxy.drop());
});

test('connections cut, new ones left hanging unanswered: the same', async () => {
  await burstThroughOutage('hanging', () => proxy.hold());
});

test('the front stops cleanly afterwards', async () => {
  // eslint-disable-next-line no-console
  console.log(JSON.stringify(measured, null, 1));
  expect(server.proc.exitCode).toBeNull();
  expect(await server.stop()).toBe(0);
  expect(server.stderr()).toBe('');
});
