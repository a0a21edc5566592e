/**
 * The delivery layer on its own, with sockets whose outbound buffer the test controls: in order, exactly
 * once, partial results coalesced while a socket lags, resync when it stalls, and a replay seam without a
 * gap or a duplicate.
 */
import { EventEmitter } from 'node:events';
import type { Socket } from 'socket.io';
import type { RunEventEnvelope } from '../protocol/events';
import { createDelivery } from '../server/realtime/delivery';

/** A socket whose engine.io connection has `n` packets waiting, untaken, after lag(n); lag(0) drains it. */
function fakeSocket(id: string) {
  const sent: { name: string; body: any }[] = [];
  const conn = Object.assign(new EventEmitter(), { transport: { writable: true } });
  const socket = { id, conn, emit: (name: string, body: unknown) => sent.push({ name, body }) };
  const lag = (n: number) => {
    conn.transport.writable = true;
    conn.emit('flush');
    if (n === 0) return;
    conn.transport.writable = false;
    for (let i = 0; i < n; i++) conn.emit('packetCreate', { data: 'x' });
  };
  return { socket: socket as unknown as Socket, sent, lag };
}

const BYTES = { maxBufferedBytes: 1e9, maxAckBytes: 1e9 };

function ev(seq: number, type = 'partial_result', runId = 'r1'): RunEventEnvelope {
  return { type, event_id: `e${seq}`, seq, run_id: runId, thread_id: 't', user_id: 'u', agent_name: 'a', timestamp: new Date(0).toISOString(), payload: type === 'partial_result' ? { text: `p${seq} ` } : {} } as RunEventEnvelope;
}

const seqsOf = (sent: { name: string; body: any }[]) => sent.filter((s) => s.body?.seq).map((s) => (s.body.coalesced_from_seq ? `${s.body.coalesced_from_seq}-${s.body.seq}` : String(s.body.seq)));

test('in order, exactly once, from the run\'s first event; a run under way is joined only by replay', () => {
  let dropped = 0;
  const d = createDelivery({ ...BYTES, maxBufferedPackets: 100, onDropped: (n) => (dropped += n), eventOneMissing: async () => [] });
  const a = fakeSocket('a');
  d.add('u', a.socket);
  for (const s of [1, 2, 2, 3, 1, 4]) d.deliver(ev(s, s === 1 ? 'message_received' : 'partial_result'));
  expect(seqsOf(a.sent)).toEqual(['1', '2', '3', '4']);
  const late = fakeSocket('late');
  d.add('u', late.socket);
  d.deliver(ev(5));
  expect(late.sent).toEqual([]);
  expect(dropped).toBe(0);
});

test('a lagging socket gets consecutive partial results merged, flushed before the next other event', async () => {
  const d = createDelivery({ ...BYTES, maxBufferedPackets: 100, onDropped: () => undefined, eventOneMissing: async () => [] });
  const a = fakeSocket('a');
  d.add('u', a.socket);
  d.deliver(ev(1, 'message_received'));
  a.lag(30);
  for (const s of [2, 3, 4, 5]) d.deliver(ev(s));
  expect(seqsOf(a.sent)).toEqual(['1']);
  d.deliver(ev(6, 'tool_executing'));
  expect(seqsOf(a.sent)).toEqual(['1', '2-5', '6']);
  expect(a.sent[1].body.payload.text).toBe('p2 p3 p4 p5 ');
  // And by time, when nothing else comes.
  for (const s of [7, 8]) d.deliver(ev(s));
  // Waited for (bounded), not slept on: a busy machine fires the flush timer late.
  for (let i = 0; i < 200 && seqsOf(a.sent).length < 4; i++) await new Promise((r) => setTimeout(r, 25));
  expect(seqsOf(a.sent)).toEqual(['1', '2-5', '6', '7-8']);
  // Not lagging any more: one envelope per event again.
  a.lag(0);
  d.deliver(ev(9));
  expect(seqsOf(a.sent).at(-1)).toBe('9');
});

test('a stalled socket is told resync_required once and gets nothing more of that run until it replays', async () => {
  let dropped = 0;
  const d = createDelivery({ ...BYTES, maxBufferedPackets: 10, onDropped: (n) => (dropped += n), eventOneMissing: async () => [] });
  const a = fakeSocket('a');
  d.add('u', a.socket);
  d.deliver(ev(1, 'message_received'));
  a.lag(11);
  for (const s of [2, 3, 4]) d.deliver(ev(s));
  expect(a.sent.filter((s) => s.name === 'resync_required')).toEqual([{ name: 'resync_required', body: { run_id: 'r1', last_seq: 1 } }]);
  expect(dropped).toBe(3);
  a.lag(0);
  const log = [2, 3, 4, 5].map((s) => ev(s));
  const last = await d.replay(a.socket, 'r1', 1, async (after) => log.filter((e) => e.seq > after).slice(0, 2));
  expect(last.lastSeq).toBe(5);
  d.deliver(ev(5));
  d.deliver(ev(6, 'agent_completed'));
  expect(seqsOf(a.sent)).toEqual(['1', '2', '3', '4', '5', '6']);
});

test('events that arrive during a replay are held and released past what the replay sent', async () => {
  const d = createDelivery({ ...BYTES, maxBufferedPackets: 100, onDropped: () => undefined, eventOneMissing: async () => [] });
  const a = fakeSocket('a');
  d.add('u', a.socket);
  const log = [1, 2, 3].map((s) => ev(s));
  const replay = d.replay(a.socket, 'r1', 0, async (after) => {
    // While the log is read, the run goes on: 3 (also in the log) and 4 (not yet) arrive live.
    d.deliver(ev(3));
    d.deliver(ev(4));
    return log.filter((e) => e.seq > after);
  });
  await replay;
  expect(seqsOf(a.sent)).toEqual(['1', '2', '3', '4']);
});
