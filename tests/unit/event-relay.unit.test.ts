/**
 * The event relay with a fake store and a recording bus: numbering, write-then-send order, batching of
 * events that arrive while a write is in flight, write failures, side writes in order, and the terminal event.
 */
import type { RunEventEnvelope } from '../../protocol/events';
import { createEventRelay, type RunLog } from '../../server/runs/event-relay';
import { newLiveRun } from '../../server/runs/live-run';
import { FencedError } from '../../server/store/run-writes';

function deferred() {
  let resolve!: () => void;
  let reject!: (err: Error) => void;
  const promise = new Promise<void>((res, rej) => ((resolve = res), (reject = rej)));
  return { promise, resolve, reject };
}

function rig() {
  const log: string[] = [];
  const batches: number[][] = [];
  let gate: ReturnType<typeof deferred> | null = null;
  let failAppend = false;
  let failFinish = false;
  let fence = false;
  const fencedRuns: string[] = [];
  const finished: unknown[][] = [];
  const store = {
    async appendEvents(batch: RunEventEnvelope[]) {
      batches.push(batch.map((e) => e.seq));
      log.push(`write ${batch.map((e) => e.seq).join(',')}`);
      if (gate) await gate.promise;
      if (fence) throw new FencedError('taken over');
      if (failAppend) throw new Error('disk full');
    },
    async finishRun(...args: unknown[]) {
      finished.push(args);
      log.push(`finish ${(args[5] as RunEventEnvelope).seq}`);
      if (fence) throw new FencedError('taken over');
      if (failFinish) throw new Error('disk gone');
    },
  };
  const counters = { relayed: 0, dropped: [] as [string, number][] };
  const metrics = {
    eventsRelayed: { inc: (n = 1) => (counters.relayed += n) },
    eventsDropped: { inc: (labels: { reason: string }, n = 1) => counters.dropped.push([labels.reason, n]) },
  };
  const errors: [Record<string, unknown>, string][] = [];
  const debugs: [Record<string, unknown>, string][] = [];
  const logger = { error: (fields: Record<string, unknown>, msg: string) => errors.push([fields, msg]), debug: (fields: Record<string, unknown>, msg: string) => debugs.push([fields, msg]) };
  const sent: RunEventEnvelope[] = [];
  const bus = {
    publish: (e: RunEventEnvelope) => {
      sent.push(e);
      log.push(`send ${e.user_id}:${e.seq}`);
    },
  };
  const relay = createEventRelay({ store: store as never, bus, metrics: metrics as never, log: logger as never, onFenced: (r) => fencedRuns.push(r.id) });
  const run = newLiveRun({ id: 'r1', userId: 'u1', threadId: 't1', agentName: 'echo', input: { text: 'hi' }, requestId: 'q', correlationId: null, acceptedAt: 0 });
  const runLog = relay.open(run, 2);
  return {
    debugs,
    relay,
    run,
    runLog,
    log,
    batches,
    sent,
    counters,
    errors,
    finished,
    hold: () => (gate = deferred()),
    release: () => gate?.resolve(),
    failAppend: (v: boolean) => (failAppend = v),
    failFinish: (v: boolean) => (failFinish = v),
    fence: () => (fence = true),
    unfence: () => (fence = false),
    fencedRuns,
  };
}

/** Everything queued for the run so far is written and published. */
const settle = (runLog: RunLog) => runLog.chain;

test('envelopes are numbered from the run, never repeat, and carry the run identity', () => {
  const { relay, run, runLog } = rig();
  const a = relay.envelope(run, 'partial_result', { text: 'x' }, Date.UTC(2020, 0, 1));
  const b = relay.envelope(run, 'partial_result', { text: 'y' });
  expect(a).toEqual({
    type: 'partial_result',
    event_id: expect.stringMatching(/^[0-9a-f-]{36}$/),
    seq: 2,
    run_id: 'r1',
    thread_id: 't1',
    user_id: 'u1',
    agent_name: 'echo',
    timestamp: '2020-01-01T00:00:00.000Z',
    payload: { text: 'x' },
  });
  expect(b.seq).toBe(3);
  expect(b.event_id).not.toBe(a.event_id);
  expect(Math.abs(Date.parse(b.timestamp) - Date.now())).toBeLessThan(60_000);
  expect(runLog.nextSeq).toBe(4);
});

test('each event is written before it is sent; events arriving during a write go in the next batch', async () => {
  const { relay, run, runLog, log, batches, sent, counters, hold, release } = rig();
  hold();
  relay.append(run, 'partial_result', { text: 'a' });
  await Promise.resolve();
  await Promise.resolve();
  relay.append(run, 'partial_result', { text: 'b' });
  relay.append(run, 'partial_result', { text: 'c' });
  release();
  await settle(runLog);
  expect(batches).toEqual([[2], [3, 4]]);
  expect(log).toEqual(['write 2', 'send u1:2', 'write 3,4', 'send u1:3', 'send u1:4']);
  expect(sent.map((e) => e.payload)).toEqual([{ text: 'a' }, { text: 'b' }, { text: 'c' }]);
  expect(counters.relayed).toBe(3);
  expect(runLog.pending).toEqual([]);
});

test('append keeps the timestamp it is given', async () => {
  const { relay, run, runLog, sent } = rig();
  relay.append(run, 'agent_started', { status: 'running', message: 'go' }, Date.UTC(2021, 5, 1));
  await settle(runLog);
  expect(sent[0].timestamp).toBe('2021-06-01T00:00:00.000Z');
});

test('a flooding run is written in slices of 200 events', async () => {
  const { relay, run, runLog, batches, counters } = rig();
  for (let i = 0; i < 401; i++) relay.append(run, 'partial_result', { text: String(i) });
  await settle(runLog);
  expect(batches.map((b) => b.length)).toEqual([200, 200, 1]);
  expect(batches.flat()).toEqual(Array.from({ length: 401 }, (_, i) => i + 2));
  expect(counters.relayed).toBe(401);
});

test('a flooding run of large events is written in slices of at most 1 MiB of payload, so it never makes a commit that every other run waits behind', async () => {
  // 256 events of 64 KiB (MAX_EVENT_BYTES), a run's whole MAX_RUN_EVENT_BYTES, queued at once: in slices of 200
  // events, one write held 12.8 MiB, and three such runs made one commit of 38 MiB that every other user's
  // events on the node waited for (3.5-4 s p99 for another user's stream, measured on 2 cores, review-c).
  const { relay, run, runLog, batches, counters } = rig();
  const text = 'x'.repeat(65_500);
  for (let i = 0; i < 256; i++) relay.append(run, 'partial_result', { text });
  await settle(runLog);
  expect(batches.flat()).toEqual(Array.from({ length: 256 }, (_, i) => i + 2));
  expect(Math.max(...batches.map((b) => b.length))).toBe(16);
  expect(batches.length).toBe(16);
  expect(counters.relayed).toBe(256);
});

test('one event over the byte slice still goes out, alone', async () => {
  const { relay, run, runLog, batches } = rig();
  relay.append(run, 'partial_result', { text: 'x'.repeat(2_000_000) });
  relay.append(run, 'partial_result', { text: 'small' });
  await settle(runLog);
  expect(batches).toEqual([[2], [3]]);
});

test('a failed log write is logged and counted, and its events are not sent (only committed events are)', async () => {
  const { relay, run, runLog, sent, counters, errors, failAppend } = rig();
  failAppend(true);
  relay.append(run, 'partial_result', { text: 'a' });
  relay.append(run, 'partial_result', { text: 'b' });
  await settle(runLog);
  expect(sent.map((e) => e.seq)).toEqual([]);
  expect(counters.dropped).toEqual([['not_logged', 2]]);
  expect(counters.relayed).toBe(0);
  expect(errors).toEqual([[expect.objectContaining({ run_id: 'r1', user_id: 'u1', err: 'disk full', events: 2 }), 'event log write failed']]);
  // The chain goes on.
  failAppend(false);
  relay.append(run, 'partial_result', { text: 'c' });
  await settle(runLog);
  expect(sent.map((e) => e.seq)).toEqual([4]);
});

test('deliver sends an event already in the log once its write resolves, in the run order', async () => {
  const { relay, run, runLog, log, counters } = rig();
  const written = deferred();
  const first = relay.envelope(run, 'message_received', { input: { text: 'hi' } } as never);
  relay.deliver(run, first, written.promise);
  relay.append(run, 'partial_result', { text: 'a' });
  await Promise.resolve();
  await Promise.resolve();
  expect(log).toEqual([]);
  written.resolve();
  await settle(runLog);
  expect(log).toEqual(['send u1:2', 'write 3', 'send u1:3']);
  expect(counters.relayed).toBe(2);
});

test('side writes run in the run order; a failing one is logged and does not break the chain', async () => {
  const { relay, run, runLog, log, errors } = rig();
  relay.append(run, 'partial_result', { text: 'a' });
  relay.queueWrite(run, async () => {
    log.push('status');
    throw new Error('no row');
  });
  relay.queueWrite(run, async () => {
    log.push('status 2');
  });
  await settle(runLog);
  expect(log).toEqual(['write 2', 'send u1:2', 'status', 'status 2']);
  expect(errors).toEqual([[expect.objectContaining({ run_id: 'r1', err: 'no row' }), 'run write failed']]);
});

test('finish writes pending events first, then the terminal event with the run status, and sends it last', async () => {
  const { relay, run, log, finished, sent, counters } = rig();
  run.partialText = 'partial';
  relay.append(run, 'partial_result', { text: 'a' });
  const report = { leaks: {} } as never;
  await relay.finish(run, 'completed', null, { answer: 1 }, 42, report);
  expect(log).toEqual(['write 2', 'send u1:2', 'finish 3', 'send u1:3']);
  const terminal = sent[1];
  expect(terminal.type).toBe('agent_completed');
  expect(terminal.payload).toEqual({ status: 'completed', success: true, final_response: { answer: 1 }, execution_time_ms: 42 });
  expect(finished).toEqual([['r1', 't1', 'completed', null, { answer: 1 }, terminal, report, 'partial', null]]);
  expect(counters.relayed).toBe(2);
});

test('a failed run carries its error and success false', async () => {
  const { relay, run, sent } = rig();
  const error = { code: 'TIMEOUT' as const, message: 'too slow' };
  await relay.finish(run, 'timeout', error, null, 7, null);
  expect(sent[0].payload).toEqual({ status: 'timeout', success: false, final_response: null, error, execution_time_ms: 7 });
});

test('a failed terminal write is logged and counted, and the terminal event is not sent (only committed events are)', async () => {
  const { relay, run, sent, counters, errors, failFinish } = rig();
  failFinish(true);
  await relay.finish(run, 'failed', { code: 'AGENT_ERROR', message: 'x' }, null, 1, null);
  expect(sent.map((e) => e.type)).toEqual([]);
  expect(counters.dropped).toEqual([['not_logged', 1]]);
  expect(counters.relayed).toBe(0);
  expect(errors).toEqual([[expect.objectContaining({ run_id: 'r1', err: 'disk gone' }), 'terminal write failed']]);
});

test('the run log closes with its terminal event; a log never opened, or forgotten, numbers nothing', async () => {
  const { relay, run } = rig();
  await relay.finish(run, 'completed', null, 'x', 1, null);
  const other = newLiveRun({ id: 'r2', userId: 'u1', threadId: 't1', agentName: 'echo', input: { text: '' }, requestId: 'q2', correlationId: null, acceptedAt: 0 });
  expect(() => relay.envelope(other, 'partial_result', { text: 'x' })).toThrow('no event log is open for run r2');
  relay.open(other, 1);
  expect(relay.envelope(other, 'partial_result', { text: 'x' }).seq).toBe(1);
  relay.forget(other);
  expect(() => relay.queueWrite(other, async () => undefined)).toThrow('no event log is open for run r2');
});

test('an event appended after the terminal event (a late timer or message) is dropped and counted, not thrown', async () => {
  const { relay, run, runLog, sent, batches, counters, debugs } = rig();
  relay.append(run, 'partial_result', { text: 'a' });
  const done = relay.finish(run, 'completed', null, 'x', 1, null);
  // Between the terminal event and the log's closing: nothing may follow the terminal event.
  expect(() => relay.append(run, 'partial_result', { text: 'while closing' })).not.toThrow();
  await done;
  // After the log closed.
  expect(() => relay.append(run, 'partial_result', { text: 'late' })).not.toThrow();
  await settle(runLog);
  expect(sent.map((e) => [e.seq, e.type])).toEqual([
    [2, 'partial_result'],
    [3, 'agent_completed'],
  ]);
  expect(batches).toEqual([[2]]);
  expect(counters.dropped).toEqual([
    ['run_settled', 1],
    ['run_settled', 1],
  ]);
  expect(debugs).toEqual([
    [expect.objectContaining({ run_id: 'r1', type: 'partial_result' }), 'event after the run settled; dropped'],
    [expect.objectContaining({ run_id: 'r1', type: 'partial_result' }), 'event after the run settled; dropped'],
  ]);
});

test('a write refused because another node took the run over: nothing is sent, the run is handed to onFenced once, its log closes', async () => {
  const { relay, run, runLog, sent, errors, fence, fencedRuns, counters } = rig();
  relay.append(run, 'partial_result', { text: 'a' });
  await settle(runLog);
  fence();
  relay.append(run, 'partial_result', { text: 'b' });
  relay.append(run, 'partial_result', { text: 'c' });
  await settle(runLog);
  expect(sent.map((e) => e.seq)).toEqual([2]);
  expect(fencedRuns).toEqual(['r1']);
  expect(runLog.closed).toBe(true);
  // Nothing more is numbered for it, and it is not an error of this node.
  relay.append(run, 'partial_result', { text: 'd' });
  expect(errors).toEqual([]);
  expect(counters.dropped).toEqual([['not_logged', 2], ['run_settled', 1]]);
});

test('a run lost and claimed again here: what the old one still had under way never touches the new one\'s log', async () => {
  const { relay, run, runLog, sent, hold, release, fence, unfence, counters } = rig();
  hold();
  relay.append(run, 'partial_result', { text: 'old' });
  // The lease is lost (the run abandoned), the run taken over, then claimed again by this node under a new lease.
  relay.forget(run);
  const again = newLiveRun({ id: 'r1', userId: 'u1', threadId: 't1', agentName: 'echo', input: { text: 'hi' }, requestId: 'q', correlationId: null, acceptedAt: 0 });
  const newLog = relay.open(again, 5);
  // The old attempt's write is refused by the database (its owner is the lost lease).
  fence();
  release();
  await settle(runLog);
  unfence();
  expect(newLog.closed).toBe(false);
  // A late event of the old attempt takes no seq of the new one.
  relay.append(run, 'partial_result', { text: 'late' });
  relay.append(again, 'partial_result', { text: 'new' });
  await settle(newLog);
  expect(sent.map((e) => [e.seq, (e.payload as { text: string }).text])).toEqual([[5, 'new']]);
  expect(counters.dropped).toEqual([['not_logged', 1], ['run_settled', 1]]);
  // The old attempt's end (abandoned: it never writes one) could not drop the new log either.
  relay.forget(run);
  relay.append(again, 'partial_result', { text: 'more' });
  await settle(newLog);
  expect(sent.map((e) => e.seq)).toEqual([5, 6]);
});

test('a payload that does not stringify ends its slice, and the log goes on (it is not stopped)', async () => {
  const { relay, run, runLog, batches } = rig();
  relay.append(run, 'partial_result', { text: 'a' });
  relay.append(run, 'partial_result', { n: 1n } as unknown as { text: string });
  relay.append(run, 'partial_result', { text: 'c' });
  relay.append(run, 'partial_result', { text: 'd' });
  await settle(runLog);
  expect(batches.flat()).toEqual([2, 3, 4, 5]);
});

test('a slice takes events up to exactly 1 MiB of payload characters', async () => {
  const { relay, run, runLog, batches } = rig();
  // {"text":"…"}: 11 characters around the text; two of them make 1,048,576 characters.
  const text = 'x'.repeat(1_048_576 / 2 - 11);
  for (let i = 0; i < 3; i++) relay.append(run, 'partial_result', { text });
  await settle(runLog);
  expect(batches).toEqual([[2, 3], [4]]);
});
