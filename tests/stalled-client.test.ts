/**
 * "The front's memory never grows with a stalled client": a real socket.io client stops reading its TCP
 * connection while its run streams far more than SOCKET_MAX_BUFFERED_BYTES. The front stops sending it that
 * run's live events (counted as socket_backpressure), its own memory stays flat whatever the stream's size,
 * and once the client reads again it finds resync_required and replays the rest from the log.
 *
 * The test waits for the run to have streamed everything (a state), never for a time: however slow the
 * machine, the whole stream has passed the front before its memory is judged.
 */
import { io, type Socket } from 'socket.io-client';
import { FIXTURE_AGENTS, startServer, type TestServer } from './helpers/server';
import { devLogin, httpCall, metricValue, type Envelope } from './helpers/client';

const BUDGET = 1024 * 1024; // SOCKET_MAX_BUFFERED_BYTES
const PAD = 100_000; // bytes per partial_result
const PARTS = 250; // 25 MB streamed: 25 times the budget
const STREAMED = PAD * PARTS;

/** The front's own sample of a metric: the unlabelled series (cells' series carry a `cell` label). */
/** The front's own series: only the node label (cells' series carry `cell` too). */
const frontValue = (text: string, name: string) => Number(new RegExp(`^${name}(?:\\{node="[^"]*"\\})? (\\S+)$`, 'm').exec(text)?.[1] ?? NaN);

describe('a client that stops reading', () => {
  let server: TestServer;
  let s: Socket | undefined;
  beforeAll(async () => {
    server = await startServer({
      AGENTS_DIR: FIXTURE_AGENTS,
      SOCKET_MAX_BUFFERED_BYTES: String(BUDGET),
      // Never cut off during this test: a disconnect would free what it holds and hide a growth.
      SOCKET_STALL_TIMEOUT_MS: '3600000',
      MAX_EVENT_BYTES: String(PAD + 10_000),
      MAX_EVENTS_PER_RUN: '100000',
      MAX_RUN_EVENT_BYTES: String(2 * STREAMED),
      CELLS: '1',
    });
  });
  afterAll(async () => {
    s?.close(); // also when an assertion failed while it was paused
    await server.stop();
  });

  test('its run streams 25x its byte budget: the front\'s memory stays flat, drops are counted, and resync_required arrives', async () => {
    const token = await devLogin(server.url, 'stalled-reader');
    const scrape = async () => (await httpCall(server.url, 'GET', '/metrics')).body as string;
    const socket = io(server.url, { auth: { token }, transports: ['websocket'], reconnection: false, forceNew: true });
    s = socket;
    const got: Envelope[] = [];
    socket.onAny((_n: string, e: Envelope) => e && typeof e === 'object' && 'seq' in e && got.push(e));
    const notices: { run_id: string; last_seq: number }[] = [];
    socket.on('resync_required', (n) => notices.push(n));
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', () => resolve());
      socket.once('connect_error', reject);
    });
    // Stop reading the TCP connection before the run exists: everything the front sends this socket from now
    // on fills the kernel's buffers, then the front's.
    const raw = (socket.io.engine as any).transport.ws._socket;
    raw.pause();

    // Warm the path (a run, a scrape) so the baseline is not taken before the front's first allocations.
    const thread = (await httpCall(server.url, 'POST', '/v1/threads', {}, token)).body;
    const warm = (await httpCall(server.url, 'POST', `/v1/threads/${thread.id}/runs`, { agent: 'streamer', input: { text: 'w', parts: 5, delay: 0, pad: 1000 } }, token)).body;
    for (let i = 0; (await httpCall(server.url, 'GET', `/v1/runs/${warm.id}`, undefined, token)).body.status !== 'completed'; i++) {
      if (i > 600) throw new Error('warm-up run did not finish');
      await new Promise((r) => setTimeout(r, 100));
    }
    const before = await scrape();
    const rss0 = frontValue(before, 'process_resident_memory_bytes');
    const external0 = frontValue(before, 'nodejs_external_memory_bytes');
    const dropped0 = metricValue(before, 'atoll_events_dropped_total', { reason: 'socket_backpressure' }) || 0;

    const run = (await httpCall(server.url, 'POST', `/v1/threads/${thread.id}/runs`, { agent: 'streamer', input: { text: 's', parts: PARTS, delay: 21, pad: PAD, short_result: true } }, token)).body;
    expect(run.id).toEqual(expect.any(String));
    // Sample the front's memory until the run has streamed everything and finished (no time limit of its
    // own: jest's test timeout is the only bound).
    let peakRss = rss0;
    let peakExternal = external0;
    let peakHeld = 0;
    let status = '';
    while (status !== 'completed') {
      const m = await scrape();
      peakRss = Math.max(peakRss, frontValue(m, 'process_resident_memory_bytes'));
      peakExternal = Math.max(peakExternal, frontValue(m, 'nodejs_external_memory_bytes'));
      peakHeld = Math.max(peakHeld, frontValue(m, 'atoll_socket_outbound_bytes'));
      status = (await httpCall(server.url, 'GET', `/v1/runs/${run.id}`, undefined, token)).body.status;
      expect(['queued', 'running', 'completed']).toContain(status);
      await new Promise((r) => setTimeout(r, 100));
    }
    const after = await scrape();
    const dropped = (metricValue(after, 'atoll_events_dropped_total', { reason: 'socket_backpressure' }) || 0) - dropped0;
    const end = await scrape();
    // The process's own figures are shown, not judged: garbage the stream leaves until the next GC moves RSS
    // and heap by tens of MB either way. What the front holds for the socket is exact.
    const seen = {
      held: peakHeld,
      heldAtEnd: frontValue(end, 'atoll_socket_outbound_bytes'),
      rssGrowth: peakRss - rss0,
      externalGrowth: peakExternal - external0,
      heapGrowthAtEnd: frontValue(end, 'nodejs_heap_size_used_bytes') - frontValue(before, 'nodejs_heap_size_used_bytes'),
      streamed: STREAMED,
      dropped,
    };
    // What the front held for the socket, at any sample while the whole stream passed: its budget plus the
    // message that crossed it (while it lags, partial results go out merged, 50 ms of them in one message),
    // a few hundred KB over; a front that kept sending would hold tens of MB here.
    expect({ heldOverHalfBudget: seen.held > BUDGET / 2, heldWithin4Budgets: seen.held <= 4 * BUDGET, seen }).toMatchObject({ heldOverHalfBudget: true, heldWithin4Budgets: true });
    // Most of the run's events were not sent to this socket, and each was counted.
    expect(dropped).toBeGreaterThan(PARTS / 2);

    // Reading again, the client finds the notice, then replays what it missed from the log.
    raw.resume();
    for (let i = 0; !notices.some((n) => n.run_id === run.id); i++) {
      if (i > 1200) throw new Error('no resync_required within 120 s of reading again');
      await new Promise((r) => setTimeout(r, 100));
    }
    const notice = notices.find((n) => n.run_id === run.id)!;
    expect(notice).toEqual({ run_id: run.id, last_seq: expect.any(Number) });
    expect(notices.filter((n) => n.run_id === run.id)).toHaveLength(1);
    for (let after: number | null = notice.last_seq; after !== null; ) {
      const ack: any = await socket.timeout(60_000).emitWithAck('subscribe_run', { run_id: run.id, after_seq: after });
      // Still over its byte budget while it drains what it was sent: refused with a retry hint.
      if (ack.error?.code === 'RATE_LIMITED') {
        await new Promise((r) => setTimeout(r, 200));
        continue;
      }
      expect(ack.error).toBeUndefined();
      after = ack.next_after_seq;
    }
    // Every event once, in order, ending with the terminal one (a merged envelope covers coalesced_from_seq..seq).
    const mine = got.filter((e) => e.run_id === run.id);
    expect(mine.at(-1)!.type).toBe('agent_completed');
    const seqs = mine.flatMap((e: any) => (e.coalesced_from_seq ? Array.from({ length: e.seq - e.coalesced_from_seq + 1 }, (_, i) => e.coalesced_from_seq + i) : [e.seq]));
    expect(seqs).toEqual(seqs.map((_, i) => i + 1));
  }, 300_000);
});
