/**
 * Delivery's decisions on fake sockets whose outbound buffer the test sets, with fake timers: cursors,
 * the lag and stall thresholds, coalescing, replay pages and the replay size cap, and a gap on the bus.
 */
import { EventEmitter } from 'node:events';
import type { Socket } from 'socket.io';
import type { RunEventEnvelope } from '../../protocol/events';
import { createDelivery, type DeliveryOptions } from '../../server/realtime/delivery';

/** A socket whose connection has `packets` packets of `size` bytes each waiting, untaken, after lag(). */
function fakeSocket(id: string) {
  const sent: { name: string; body: any }[] = [];
  const conn = Object.assign(new EventEmitter(), { transport: { writable: true } });
  const socket = { id, conn, emit: (name: string, body: unknown) => sent.push({ name, body }) };
  const lag = (packets: number, size = 1) => {
    conn.transport.writable = true;
    conn.emit('flush');
    if (packets === 0) return;
    conn.transport.writable = false;
    for (let i = 0; i < packets; i++) conn.emit('packetCreate', { data: 'x'.repeat(size - 1) });
  };
  return { socket: socket as unknown as Socket, conn, sent, lag };
}

function ev(seq: number, type = 'partial_result', runId = 'r1', userId = 'u'): RunEventEnvelope {
  const payload = type === 'partial_result' ? { text: `p${seq} ` } : {};
  return { type, event_id: `e${seq}`, seq, run_id: runId, thread_id: 't', user_id: userId, agent_name: 'a', timestamp: new Date(0).toISOString(), payload } as RunEventEnvelope;
}

const seqs = (sent: { name: string; body: any }[]) =>
  sent.filter((s) => s.name !== 'resync_required').map((s) => (s.body.coalesced_from_seq ? `${s.body.coalesced_from_seq}-${s.body.seq}` : String(s.body.seq)));

/** A replay whose log reader gives up after 20 pages: a replay that never stops fails instead of hanging. */
function replayOf(d: ReturnType<typeof createDelivery>, socket: Socket, runId: string, after: number, read: (after: number) => Promise<RunEventEnvelope[]>) {
  let pages = 0;
  return d.replay(socket, runId, after, (from) => {
    if (++pages > 20) throw new Error('the replay read past the end of the log');
    return read(from);
  });
}

function rig(opts: Partial<DeliveryOptions> = {}) {
  const drops: number[] = [];
  const missing: string[][] = [];
  const d = createDelivery({ maxBufferedPackets: 100, maxBufferedBytes: 1e9, maxAckBytes: 1e9, onDropped: (n) => drops.push(n), eventOneMissing: async (_s, _since, ids) => (missing.push(ids), []), ...opts });
  const a = fakeSocket('a');
  d.add('u', a.socket);
  return { d, a, drops, missing };
}

beforeEach(() => jest.useFakeTimers());
afterEach(() => jest.useRealTimers());

describe('cursors', () => {
  test('a socket follows a run from seq 1; a repeat or an older seq is dropped silently', () => {
    const { d, a, drops } = rig();
    d.deliver(ev(2));
    expect(a.sent).toEqual([]);
    d.deliver(ev(1, 'message_received'));
    d.deliver(ev(1, 'message_received'));
    d.deliver(ev(2));
    d.deliver(ev(2));
    d.deliver(ev(3));
    expect(seqs(a.sent)).toEqual(['1', '2', '3']);
    expect(a.sent[0]).toEqual({ name: 'message_received', body: ev(1, 'message_received') });
    expect(drops).toEqual([]);
  });

  test('several nodes: events of a run that come before its event 1 (another node claimed it first) are sent after it, in order, once', () => {
    const { d, a, drops } = rig();
    d.deliver(ev(3));
    d.deliver(ev(2));
    d.deliver(ev(4, 'agent_completed'));
    expect(a.sent).toEqual([]);
    d.deliver(ev(1, 'message_received'));
    expect(seqs(a.sent)).toEqual(['1', '2', '3', '4']);
    // The accepting node's event 1 arriving late, after the run finished here, is not a new run.
    d.deliver(ev(1, 'message_received'));
    d.deliver(ev(2));
    expect(seqs(a.sent)).toEqual(['1', '2', '3', '4']);
    expect(a.sent.filter((s) => s.name === 'resync_required')).toEqual([]);
    expect(drops).toEqual([]);
  });

  test('early events a socket could not keep (too many, or kept past 2 s) are replayed: event 1, then resync_required from 1', () => {
    const { d, a } = rig();
    for (let seq = 2; seq <= 40; seq++) d.deliver(ev(seq));
    d.deliver(ev(1, 'message_received'));
    expect(seqs(a.sent)).toEqual(['1']);
    expect(a.sent.filter((s) => s.name === 'resync_required')).toEqual([{ name: 'resync_required', body: { run_id: 'r1', last_seq: 1 } }]);
    d.deliver(ev(41));
    expect(seqs(a.sent)).toEqual(['1']);

    const late = rig();
    late.d.deliver(ev(2, 'agent_thinking', 'r2'));
    jest.advanceTimersByTime(2001);
    late.d.deliver(ev(3, 'agent_completed', 'r2'));
    late.d.deliver(ev(1, 'message_received', 'r2'));
    expect(late.a.sent.map((s) => s.name)).toEqual(['message_received', 'resync_required']);
  });

  test('early events of runs a socket joined mid-stream (whose event 1 never comes) are let go of after 2 s and do not crowd out later runs', () => {
    const { d, a } = rig();
    for (let run = 0; run < 300; run++) for (let seq = 50; seq < 53; seq++) d.deliver(ev(seq, 'partial_result', `mid${run}`));
    jest.advanceTimersByTime(2001);
    d.deliver(ev(2, 'agent_thinking', 'r9'));
    d.deliver(ev(3, 'agent_completed', 'r9'));
    d.deliver(ev(1, 'message_received', 'r9'));
    expect(seqs(a.sent)).toEqual(['1', '2', '3']);
    expect(a.sent.filter((s) => s.name === 'resync_required')).toEqual([]);
  });

  test('event 1 that never comes (its node died before publishing it): after 2 s the run is replayed from the log and followed live', async () => {
    const log = [ev(1, 'message_received'), ev(2, 'agent_thinking'), ev(3)];
    let d!: ReturnType<typeof createDelivery>;
    const asked: string[][] = [];
    const r = rig({
      eventOneMissing: async (socket, _since, ids) => {
        asked.push(ids);
        for (const id of ids) await d.replay(socket, id, 0, async (after) => log.filter((e) => e.seq > after));
        return [];
      },
    });
    d = r.d;
    d.deliver(ev(2, 'agent_thinking'));
    d.deliver(ev(3));
    jest.advanceTimersByTime(1999);
    expect(asked).toEqual([]);
    jest.advanceTimersByTime(10);
    expect(asked).toEqual([['r1']]);
    await jest.advanceTimersByTimeAsync(0);
    d.deliver(ev(4));
    d.deliver(ev(1, 'message_received'));
    expect(seqs(r.a.sent)).toEqual(['1', '2', '3', '4']);
    expect(r.a.sent.filter((s) => s.name === 'resync_required')).toEqual([]);
    // Asked once: the replay ended its wait.
    jest.advanceTimersByTime(10_000);
    expect(asked).toEqual([['r1']]);
  });

  test('a run the socket joined mid-stream is asked about once; then its live events are not kept', async () => {
    const asked: string[][] = [];
    const { d, a } = rig({ eventOneMissing: async (_s, _since, ids) => (asked.push(ids), ids) });
    d.deliver(ev(50, 'partial_result', 'mid'));
    jest.advanceTimersByTime(2001);
    await jest.advanceTimersByTimeAsync(0);
    for (let seq = 51; seq < 100; seq++) d.deliver(ev(seq, 'partial_result', 'mid'));
    jest.advanceTimersByTime(10_000);
    expect(asked).toEqual([['mid']]);
    // Not kept: a later run's early events all fit in the budget and are sent after its event 1.
    for (let seq = 2; seq <= 30; seq++) d.deliver(ev(seq, 'partial_result', 'r2'));
    d.deliver(ev(1, 'message_received', 'r2'));
    expect(seqs(a.sent)).toHaveLength(30);
    expect(a.sent.filter((s) => s.name === 'resync_required')).toEqual([]);
  });

  test('a run whose event 1 could not be looked up is asked about again at the next sweep', async () => {
    let calls = 0;
    const { d } = rig({ eventOneMissing: async () => { calls++; throw new Error('database away'); } });
    d.deliver(ev(2, 'agent_thinking'));
    jest.advanceTimersByTime(2001);
    await jest.advanceTimersByTimeAsync(0);
    expect(calls).toBe(1);
    await jest.advanceTimersByTimeAsync(2001);
    expect(calls).toBe(2);
  });

  test('a replay ends a run\'s wait for event 1: what it kept early leaves the budget and it is not asked about', async () => {
    const { d, a, missing } = rig();
    d.deliver(ev(2, 'agent_thinking'));
    await replayOf(d, a.socket, 'r1', 0, async (after) => [ev(1, 'message_received'), ev(2, 'agent_thinking')].filter((e) => e.seq > after));
    expect(seqs(a.sent)).toEqual(['1', '2']);
    // The whole budget (32 events) is free for the next run.
    for (let seq = 2; seq <= 33; seq++) d.deliver(ev(seq, 'partial_result', 'r2'));
    d.deliver(ev(1, 'message_received', 'r2'));
    expect(seqs(a.sent)).toHaveLength(2 + 33);
    expect(a.sent.filter((s) => s.name === 'resync_required')).toEqual([]);
    jest.advanceTimersByTime(10_000);
    expect(missing).toEqual([]);
  });

  test('the early memory is full of runs still waiting: the oldest is let go and asked about at once, not forgotten', () => {
    const { d, missing } = rig();
    for (let run = 0; run < 256; run++) d.deliver(ev(2, 'agent_thinking', `w${run}`));
    expect(missing).toEqual([]);
    d.deliver(ev(2, 'agent_thinking', 'w256'));
    expect(missing).toEqual([['w0']]);
  });

  test('a hole in the seqs (events this socket never got) pauses the run and asks the client to replay from its cursor, once', () => {
    const { d, a, drops } = rig();
    d.deliver(ev(1));
    d.deliver(ev(5));
    d.deliver(ev(6));
    expect(seqs(a.sent)).toEqual(['1']);
    expect(a.sent.filter((s) => s.name === 'resync_required')).toEqual([{ name: 'resync_required', body: { run_id: 'r1', last_seq: 1 } }]);
    expect(drops).toEqual([1, 1]);
  });

  test('agent_completed forgets the run: a later event of it is never sent', () => {
    const { d, a } = rig();
    d.deliver(ev(1));
    d.deliver(ev(2, 'agent_completed'));
    d.deliver(ev(3));
    expect(seqs(a.sent)).toEqual(['1', '2']);
  });

  test('events go to every socket of their user and to no other user', () => {
    const { d, a } = rig();
    const b = fakeSocket('b');
    const other = fakeSocket('o');
    d.add('u', b.socket);
    d.add('v', other.socket);
    expect(d.socketsOf('u')).toBe(2);
    expect(d.socketsOf('v')).toBe(1);
    expect(d.socketsOf('nobody')).toBe(0);
    d.deliver(ev(1));
    expect(seqs(a.sent)).toEqual(['1']);
    expect(seqs(b.sent)).toEqual(['1']);
    expect(other.sent).toEqual([]);
    d.deliver(ev(1, 'message_received', 'r2', 'nobody'));
  });

  test('a removed socket gets nothing more, its user is forgotten with its last socket, and removing twice is harmless', () => {
    const { d, a } = rig();
    const b = fakeSocket('b');
    d.add('u', b.socket);
    d.remove('u', a.socket);
    expect(d.socketsOf('u')).toBe(1);
    d.deliver(ev(1));
    expect(a.sent).toEqual([]);
    expect(seqs(b.sent)).toEqual(['1']);
    d.remove('u', b.socket);
    d.remove('u', b.socket);
    expect(d.socketsOf('u')).toBe(0);
    expect(a.conn.listenerCount('flush')).toBe(0); // its outbox stopped listening
    // A socket removed under another user name leaves this user's sockets alone.
    const c = fakeSocket('c');
    d.add('u', c.socket);
    d.remove('v', c.socket);
    expect(d.socketsOf('u')).toBe(1);
  });

  test('removing a socket that was merging cancels its timer', () => {
    const { d, a } = rig();
    d.deliver(ev(1));
    a.lag(30);
    d.deliver(ev(2));
    expect(jest.getTimerCount()).toBe(1);
    d.remove('u', a.socket);
    expect(jest.getTimerCount()).toBe(0);
  });
});

describe('budgets', () => {
  test('exactly at the packet budget a socket still gets events; one over, it is paused and told resync once', () => {
    const { d, a, drops } = rig({ maxBufferedPackets: 10 });
    d.deliver(ev(1, 'message_received'));
    a.lag(10);
    d.deliver(ev(2, 'tool_executing'));
    expect(seqs(a.sent)).toEqual(['1', '2']);
    expect(d.overBudget(a.socket)).toBe(false);
    a.lag(11);
    expect(d.overBudget(a.socket)).toBe(true);
    d.deliver(ev(3, 'tool_executing'));
    d.deliver(ev(4, 'tool_executing'));
    a.lag(0); // drained, but paused until it resubscribes
    d.deliver(ev(5, 'tool_executing'));
    expect(seqs(a.sent)).toEqual(['1', '2']);
    expect(a.sent.filter((s) => s.name === 'resync_required')).toEqual([{ name: 'resync_required', body: { run_id: 'r1', last_seq: 2 } }]);
    expect(drops).toEqual([1, 1, 1]);
  });

  test('the byte budget counts too', () => {
    const { d, a, drops } = rig({ maxBufferedBytes: 1000 });
    d.deliver(ev(1, 'message_received'));
    a.lag(1, 1000);
    d.deliver(ev(2, 'tool_executing'));
    a.lag(0);
    a.lag(1, 1001);
    expect(d.bufferedBytes(a.socket)).toBe(1001);
    d.deliver(ev(3, 'tool_executing'));
    expect(seqs(a.sent)).toEqual(['1', '2']);
    expect(a.sent.at(-1)).toEqual({ name: 'resync_required', body: { run_id: 'r1', last_seq: 2 } });
    expect(drops).toEqual([1]);
  });

  test('runs that end while their socket is over budget leave only what it was sent, for at most 1,000 runs; a replay still starts there', async () => {
    const { d, a } = rig({ maxBufferedPackets: 10 });
    d.deliver(ev(1, 'message_received', 'first'));
    d.deliver(ev(2, 'tool_executing', 'first'));
    a.lag(11);
    d.deliver(ev(3, 'tool_executing', 'first'));
    d.deliver(ev(4, 'agent_completed', 'first'));
    // A client that reads a little now and then stays connected over its budget while its user's runs go on.
    for (let i = 0; i < 3000; i++) for (const [seq, type] of [[1, 'message_received'], [2, 'tool_executing'], [3, 'agent_completed']] as const) d.deliver(ev(seq, type, `run-${i}`));
    expect(d.runsHeld(a.socket)).toBeLessThanOrEqual(1001);
    // The newest are remembered: a replay sends what the socket missed, from what it was sent.
    a.lag(0);
    const log = [ev(1, 'message_received', 'run-2999'), ev(2, 'tool_executing', 'run-2999'), ev(3, 'agent_completed', 'run-2999')];
    await replayOf(d, a.socket, 'run-2999', 0, async (after) => log.filter((e) => e.seq > after));
    expect(a.sent.filter((s) => s.name !== 'resync_required' && s.body.run_id === 'run-2999').map((s) => s.body.seq)).toEqual([1, 2, 3]);
  });

  test('a socket over budget at a run\'s first event is told to resync from 0', () => {
    const { d, a } = rig({ maxBufferedPackets: 10 });
    a.lag(11);
    d.deliver(ev(1, 'message_received'));
    expect(a.sent).toEqual([{ name: 'resync_required', body: { run_id: 'r1', last_seq: 0 } }]);
  });

  test('a run paused at its first event keeps none of its later events as early ones: they are counted dropped', () => {
    const { d, a, drops } = rig({ maxBufferedPackets: 10 });
    a.lag(11);
    d.deliver(ev(1, 'message_received'));
    a.lag(0);
    d.deliver(ev(2));
    d.deliver(ev(3));
    expect(a.sent).toEqual([{ name: 'resync_required', body: { run_id: 'r1', last_seq: 0 } }]);
    expect(drops).toEqual([1, 1, 1]);
  });

  test('pausing one run leaves the socket\'s other runs alone once it drains', () => {
    const { d, a } = rig({ maxBufferedPackets: 10 });
    d.deliver(ev(1, 'message_received', 'r1'));
    d.deliver(ev(1, 'message_received', 'r2'));
    a.lag(11);
    d.deliver(ev(2, 'tool_executing', 'r1'));
    a.lag(0);
    d.deliver(ev(2, 'tool_executing', 'r2'));
    d.deliver(ev(3, 'tool_executing', 'r1'));
    expect(a.sent.map((s) => `${s.body.run_id}:${s.body.seq ?? s.body.last_seq}`)).toEqual(['r1:1', 'r2:1', 'r1:1', 'r2:2']);
  });

  test('going over budget while merging sends what was merged first, then the resync notice', () => {
    const { d, a } = rig({ maxBufferedPackets: 100 });
    d.deliver(ev(1));
    a.lag(30);
    d.deliver(ev(2));
    d.deliver(ev(3));
    a.lag(101);
    d.deliver(ev(4));
    expect(a.sent.map((s) => s.name)).toEqual(['partial_result', 'partial_result', 'resync_required']);
    expect(seqs(a.sent)).toEqual(['1', '2-3']);
    expect(a.sent[2].body).toEqual({ run_id: 'r1', last_seq: 3 });
    expect(jest.getTimerCount()).toBe(0);
  });

  test('outboundBytes adds up what every socket has not taken yet', () => {
    const { d, a } = rig();
    const b = fakeSocket('b');
    d.add('v', b.socket);
    expect(d.outboundBytes()).toBe(0);
    a.lag(2, 10);
    b.lag(1, 5);
    expect(d.outboundBytes()).toBe(25);
    d.remove('v', b.socket);
    expect(d.outboundBytes()).toBe(20);
  });

  test('bufferedBytes and overBudget of an unknown socket are 0 and false', () => {
    const { d } = rig();
    const x = fakeSocket('x');
    expect(d.bufferedBytes(x.socket)).toBe(0);
    expect(d.overBudget(x.socket)).toBe(false);
  });

  test('stalled lists sockets that took none of their outstanding data for longer than the limit', () => {
    const { d, a } = rig();
    const b = fakeSocket('b');
    d.add('u', b.socket);
    a.lag(3, 10);
    jest.advanceTimersByTime(1000);
    expect(d.stalled(1000)).toEqual([]);
    jest.advanceTimersByTime(1);
    expect(d.stalled(1000)).toEqual([{ socket: a.socket, bytes: 30, stalledMs: 1001 }]);
  });
});

describe('coalescing', () => {
  test('at a quarter of the budget partials go out one by one; over it they merge for 50 ms', () => {
    const { d, a } = rig({ maxBufferedPackets: 100 });
    d.deliver(ev(1));
    a.lag(25);
    d.deliver(ev(2));
    expect(seqs(a.sent)).toEqual(['1', '2']);
    a.lag(26);
    d.deliver(ev(3));
    d.deliver(ev(4));
    d.deliver(ev(5));
    expect(seqs(a.sent)).toEqual(['1', '2']);
    jest.advanceTimersByTime(49);
    expect(seqs(a.sent)).toEqual(['1', '2']);
    jest.advanceTimersByTime(1);
    expect(seqs(a.sent)).toEqual(['1', '2', '3-5']);
    const merged = a.sent[2];
    expect(merged.name).toBe('partial_result');
    expect(merged.body).toEqual({ ...ev(5), payload: { text: 'p3 p4 p5 ' }, coalesced_from_seq: 3 });
  });

  test('once merging, later partials join even if the socket stopped lagging', () => {
    const { d, a } = rig();
    d.deliver(ev(1));
    a.lag(30);
    d.deliver(ev(2));
    a.lag(0);
    d.deliver(ev(3));
    jest.advanceTimersByTime(50);
    expect(seqs(a.sent)).toEqual(['1', '2-3']);
  });

  test('a single merged partial goes out as it was, with no coalesced_from_seq', () => {
    const { d, a } = rig();
    d.deliver(ev(1));
    a.lag(30);
    d.deliver(ev(2));
    jest.advanceTimersByTime(50);
    expect(a.sent[1]).toEqual({ name: 'partial_result', body: ev(2) });
  });

  test('another event type sends the merged partials first; a partial without text merges as empty', () => {
    const { d, a } = rig();
    d.deliver(ev(1));
    a.lag(30);
    d.deliver(ev(2));
    d.deliver({ ...ev(3), payload: {} } as RunEventEnvelope);
    d.deliver(ev(4, 'tool_executing'));
    expect(seqs(a.sent)).toEqual(['1', '2-3', '4']);
    expect(a.sent[1].body.payload).toEqual({ text: 'p2 ' });
    expect(jest.getTimerCount()).toBe(0);
  });

  test('a merged partial already counts as delivered: it is not sent again', () => {
    const { d, a } = rig();
    d.deliver(ev(1));
    a.lag(30);
    d.deliver(ev(2));
    d.deliver(ev(2));
    jest.advanceTimersByTime(50);
    expect(seqs(a.sent)).toEqual(['1', '2']);
  });

  test('runs merge separately', () => {
    const { d, a } = rig();
    d.deliver(ev(1, 'partial_result', 'r1'));
    d.deliver(ev(1, 'partial_result', 'r2'));
    a.lag(30);
    d.deliver(ev(2, 'partial_result', 'r1'));
    d.deliver(ev(2, 'partial_result', 'r2'));
    d.deliver(ev(3, 'partial_result', 'r1'));
    d.deliver(ev(3, 'tool_executing', 'r2'));
    jest.advanceTimersByTime(50);
    expect(a.sent.map((s) => `${s.body.run_id}:${s.body.coalesced_from_seq ?? ''}-${s.body.seq}`)).toEqual(['r1:-1', 'r2:-1', 'r2:-2', 'r2:-3', 'r1:2-3']);
  });
});

describe('replay', () => {
  const log = (n: number, runId = 'r1') => Array.from({ length: n }, (_, i) => ev(i + 1, 'partial_result', runId));
  const reader = (events: RunEventEnvelope[], page = 2) => {
    const calls: number[] = [];
    const read = async (after: number) => {
      calls.push(after);
      return events.filter((e) => e.seq > after).slice(0, page);
    };
    return { calls, read };
  };

  test('replays everything after the client\'s seq, page by page, then follows the run live', async () => {
    const { d, a } = rig();
    const r = reader(log(5));
    await expect(replayOf(d, a.socket, 'r1', 1, r.read)).resolves.toEqual({ lastSeq: 5, nextAfterSeq: null });
    expect(r.calls).toEqual([1, 3, 5]);
    expect(seqs(a.sent)).toEqual(['2', '3', '4', '5']);
    d.deliver(ev(5));
    d.deliver(ev(6));
    expect(seqs(a.sent)).toEqual(['2', '3', '4', '5', '6']);
  });

  test('two replays of one run at once on one socket (a resume and a resync crossing): each event once, the second from where the first ended', async () => {
    const { d, a } = rig();
    const r = reader(log(5));
    const [first, second] = await Promise.all([replayOf(d, a.socket, 'r1', 0, r.read), replayOf(d, a.socket, 'r1', 0, r.read)]);
    expect(seqs(a.sent)).toEqual(['1', '2', '3', '4', '5']);
    expect(first).toEqual({ lastSeq: 5, nextAfterSeq: null });
    expect(second).toEqual({ lastSeq: 5, nextAfterSeq: null });
    d.deliver(ev(6));
    expect(seqs(a.sent)).toEqual(['1', '2', '3', '4', '5', '6']);
  });

  test('a socket is never sent an older seq again: a later replay from 0 of a run it saw, even finished, sends only what is new', async () => {
    const { d, a } = rig();
    const r = reader(log(3));
    await replayOf(d, a.socket, 'r1', 0, r.read);
    d.deliver(ev(4, 'agent_completed'));
    expect(seqs(a.sent)).toEqual(['1', '2', '3', '4']);
    const again = reader([...log(3), ev(4, 'agent_completed')]);
    await expect(replayOf(d, a.socket, 'r1', 0, again.read)).resolves.toEqual({ lastSeq: 4, nextAfterSeq: null });
    expect(seqs(a.sent)).toEqual(['1', '2', '3', '4']);
  });

  test('an empty log leaves the cursor where the client is', async () => {
    const { d, a } = rig();
    await expect(replayOf(d, a.socket, 'r1', 7, async () => [])).resolves.toEqual({ lastSeq: 7, nextAfterSeq: null });
    d.deliver(ev(7));
    d.deliver(ev(8));
    expect(seqs(a.sent)).toEqual(['8']);
  });

  test('an unknown socket replays nothing', async () => {
    const { d } = rig();
    const x = fakeSocket('x');
    const read = jest.fn(async () => log(3));
    await expect(replayOf(d, x.socket, 'r1', 2, read)).resolves.toEqual({ lastSeq: 2, nextAfterSeq: null });
    expect(read).not.toHaveBeenCalled();
    expect(x.sent).toEqual([]);
  });

  test('one replay sends at most maxAckBytes (but always one event); the run stays paused until the next', async () => {
    const one = Buffer.byteLength(JSON.stringify(ev(1)));
    const { d, a, drops } = rig({ maxAckBytes: one * 2 });
    const events = log(5);
    await expect(replayOf(d, a.socket, 'r1', 0, reader(events, 10).read)).resolves.toEqual({ lastSeq: 2, nextAfterSeq: 2 });
    expect(seqs(a.sent)).toEqual(['1', '2']);
    d.deliver(ev(6));
    expect(seqs(a.sent)).toEqual(['1', '2']);
    expect(drops).toEqual([1]);
    await expect(replayOf(d, a.socket, 'r1', 2, reader(events, 10).read)).resolves.toEqual({ lastSeq: 4, nextAfterSeq: 4 });
    await expect(replayOf(d, a.socket, 'r1', 4, reader(events, 10).read)).resolves.toEqual({ lastSeq: 5, nextAfterSeq: null });
    d.deliver(ev(6));
    expect(seqs(a.sent)).toEqual(['1', '2', '3', '4', '5', '6']);
  });

  test('an event bigger than maxAckBytes still goes out alone, so the client always advances', async () => {
    const { d, a } = rig({ maxAckBytes: 10 });
    await expect(replayOf(d, a.socket, 'r1', 0, reader(log(3), 10).read)).resolves.toEqual({ lastSeq: 1, nextAfterSeq: 1 });
    expect(seqs(a.sent)).toEqual(['1']);
  });

  test('exactly maxAckBytes fits', async () => {
    const one = Buffer.byteLength(JSON.stringify(ev(1)));
    const { d, a } = rig({ maxAckBytes: one * 3 });
    await expect(replayOf(d, a.socket, 'r1', 0, reader(log(3), 10).read)).resolves.toEqual({ lastSeq: 3, nextAfterSeq: null });
    expect(seqs(a.sent)).toEqual(['1', '2', '3']);
  });

  test('live events during the replay are held, then released past the replay\'s cursor; other runs are not held', async () => {
    const { d, a } = rig();
    d.deliver(ev(1, 'message_received', 'r2'));
    const events = log(3);
    const result = await replayOf(d, a.socket, 'r1', 0, async (after) => {
      d.deliver(ev(3));
      d.deliver(ev(4));
      d.deliver(ev(2, 'tool_executing', 'r2'));
      return events.filter((e) => e.seq > after);
    });
    expect(result).toEqual({ lastSeq: 4, nextAfterSeq: null });
    expect(a.sent.map((s) => `${s.body.run_id}:${s.body.seq}`)).toEqual(['r2:1', 'r2:2', 'r1:1', 'r1:2', 'r1:3', 'r1:4']);
  });

  test('a held agent_completed ends the run for the socket; the replay reports its cursor', async () => {
    const { d, a } = rig();
    const events = log(2);
    const result = await replayOf(d, a.socket, 'r1', 0, async (after) => {
      d.deliver(ev(3, 'agent_completed'));
      return events.filter((e) => e.seq > after);
    });
    expect(result).toEqual({ lastSeq: 2, nextAfterSeq: null });
    expect(seqs(a.sent)).toEqual(['1', '2', '3']);
    d.deliver(ev(4));
    expect(seqs(a.sent)).toEqual(['1', '2', '3']);
  });

  test('a replay flushes what was merged and resumes a paused run', async () => {
    const { d, a } = rig({ maxBufferedPackets: 100 });
    d.deliver(ev(1));
    a.lag(30);
    d.deliver(ev(2));
    await replayOf(d, a.socket, 'r1', 2, async () => []);
    expect(seqs(a.sent)).toEqual(['1', '2']);
    expect(jest.getTimerCount()).toBe(0);
    a.lag(101);
    d.deliver(ev(3, 'tool_executing'));
    a.lag(0);
    await replayOf(d, a.socket, 'r1', 2, async (after) => [ev(3, 'tool_executing')].filter((e) => e.seq > after));
    d.deliver(ev(4, 'tool_executing'));
    expect(seqs(a.sent)).toEqual(['1', '2', '3', '4']);
  });

  test('a replay that waited for one failing half-way starts where that one stopped: nothing is sent twice', async () => {
    const { d, a } = rig();
    const events = log(6);
    let calls = 0;
    const failing = async (after: number) => {
      if (++calls > 1) throw new Error('database hiccup');
      return events.filter((e) => e.seq > after).slice(0, 3);
    };
    const first = replayOf(d, a.socket, 'r1', 0, failing);
    const second = replayOf(d, a.socket, 'r1', 0, reader(events).read);
    await expect(first).rejects.toThrow('database hiccup');
    await expect(second).resolves.toEqual({ lastSeq: 6, nextAfterSeq: null });
    expect(seqs(a.sent)).toEqual(['1', '2', '3', '4', '5', '6']);
  });

  test('a replay of a run the socket saw finish leaves no cursor: a later gap on the bus asks nothing for it', async () => {
    const { d, a } = rig();
    d.deliver(ev(1, 'message_received'));
    d.deliver(ev(2, 'agent_completed'));
    await expect(replayOf(d, a.socket, 'r1', 2, reader([ev(1, 'message_received'), ev(2, 'agent_completed')]).read)).resolves.toEqual({ lastSeq: 2, nextAfterSeq: null });
    d.gap('u');
    expect(a.sent.filter((s) => s.name === 'resync_required')).toEqual([]);
    expect(seqs(a.sent)).toEqual(['1', '2']);
  });

  test('a failing log read still releases the held events and resumes the run', async () => {
    const { d, a } = rig();
    await expect(
      replayOf(d, a.socket, 'r1', 0, async () => {
        d.deliver(ev(1));
        throw new Error('disk');
      }),
    ).rejects.toThrow('disk');
    d.deliver(ev(2));
    expect(seqs(a.sent)).toEqual(['1', '2']);
  });
});

describe('a gap on the bus', () => {
  const resyncs = (sent: { name: string; body: any }[]) => sent.filter((s) => s.name === 'resync_required').map((s) => s.body);
  const log = (n: number) => Array.from({ length: n }, (_, i) => ev(i + 1));

  test('each of the user\'s sockets is told resync_required for every run it follows, then gets none of them until it replays', async () => {
    const { d, a, drops } = rig();
    const b = fakeSocket('b');
    const other = fakeSocket('o');
    d.add('u', b.socket);
    d.add('v', other.socket);
    d.deliver(ev(1, 'message_received', 'r1'));
    d.deliver(ev(2, 'tool_executing', 'r1'));
    d.deliver(ev(1, 'message_received', 'r2'));
    d.deliver(ev(1, 'message_received', 'r3', 'v'));
    d.gap('u');
    expect(resyncs(a.sent)).toEqual([
      { run_id: 'r1', last_seq: 2 },
      { run_id: 'r2', last_seq: 1 },
    ]);
    expect(resyncs(b.sent)).toEqual(resyncs(a.sent));
    expect(resyncs(other.sent)).toEqual([]);
    d.deliver(ev(3, 'tool_executing', 'r1'));
    d.deliver(ev(2, 'tool_executing', 'r3', 'v'));
    expect(seqs(a.sent)).toEqual(['1', '2', '1']);
    expect(seqs(other.sent)).toEqual(['1', '2']);
    expect(drops).toEqual([1, 1]); // r1:3 for a and for b
    await replayOf(d, a.socket, 'r1', 2, async (after) => [ev(3, 'tool_executing')].filter((e) => e.seq > after));
    d.deliver(ev(4, 'tool_executing', 'r1'));
    expect(seqs(a.sent)).toEqual(['1', '2', '1', '3', '4']);
  });

  test('finished runs, runs never followed and runs already paused are not told (again)', async () => {
    const { d, a } = rig({ maxBufferedPackets: 10 });
    d.deliver(ev(1, 'message_received', 'done'));
    d.deliver(ev(2, 'agent_completed', 'done'));
    await replayOf(d, a.socket, 'replayed', 0, async (after) => [ev(1, 'message_received', 'replayed'), ev(2, 'agent_completed', 'replayed')].filter((e) => e.seq > after));
    d.deliver(ev(3, 'tool_executing', 'midway')); // joined mid-stream: not followed
    d.deliver(ev(1, 'message_received', 'paused'));
    a.lag(11);
    d.deliver(ev(2, 'tool_executing', 'paused'));
    a.lag(0);
    expect(resyncs(a.sent)).toEqual([{ run_id: 'paused', last_seq: 1 }]);
    d.gap('u');
    d.gap('nobody');
    expect(resyncs(a.sent)).toEqual([{ run_id: 'paused', last_seq: 1 }]);
  });

  test('partials merged so far go out before the notice', () => {
    const { d, a } = rig();
    d.deliver(ev(1));
    a.lag(30);
    d.deliver(ev(2));
    d.deliver(ev(3));
    d.gap('u');
    expect(a.sent.map((s) => s.name)).toEqual(['partial_result', 'partial_result', 'resync_required']);
    expect(seqs(a.sent)).toEqual(['1', '2-3']);
    expect(a.sent[2].body).toEqual({ run_id: 'r1', last_seq: 3 });
    expect(jest.getTimerCount()).toBe(0);
  });

  test('a run being replayed finishes its replay, then is paused and told from the replay\'s cursor; its held events are not sent', async () => {
    const { d, a } = rig();
    const result = await replayOf(d, a.socket, 'r1', 0, async (after) => {
      d.deliver(ev(3));
      d.gap('u');
      d.deliver(ev(5));
      return log(2).filter((e) => e.seq > after);
    });
    expect(result).toEqual({ lastSeq: 2, nextAfterSeq: null });
    expect(a.sent.map((s) => s.name)).toEqual(['partial_result', 'partial_result', 'resync_required']);
    expect(resyncs(a.sent)).toEqual([{ run_id: 'r1', last_seq: 2 }]);
    await replayOf(d, a.socket, 'r1', 2, async (after) => log(5).filter((e) => e.seq > after));
    d.deliver(ev(6));
    expect(seqs(a.sent)).toEqual(['1', '2', '3', '4', '5', '6']);
    expect(resyncs(a.sent)).toHaveLength(1);
  });
});
