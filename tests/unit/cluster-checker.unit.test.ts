/**
 * The cluster checker (scripts/cluster/checks/) on synthetic histories: a clean one passes, and each kind of
 * violation, planted on its own, is named. A checker that cannot fail would pass anything.
 */
import { checkHistory } from '../../scripts/cluster/checks/check-history';
import { VIOLATION_KINDS, type ViolationKind } from '../../scripts/cluster/checks/violation';
import type { Delivery, Envelope, History, Limits, LoggedEvent, RunRow, Transition } from '../../scripts/cluster/history';

const LIMITS: Limits = { userMaxConcurrentRuns: 1, maxRunAttempts: 3, unrepeatableAgents: ['unrepeatable'], queueInDatabase: true };

const COMPLETED = { status: 'completed', success: true, final_response: 'ab', execution_time_ms: 5 };

function row(id: string, threadId: string, over: Partial<RunRow> = {}): RunRow {
  return { id, userId: 'u1', threadId, agentName: 'streamer', status: 'completed', errorCode: null, attempts: 1, correlationId: null, queuedAtMs: 0, startedAtMs: 0, finishedAtMs: 0, ...over };
}

function ev(runId: string, seq: number, type: string, payload: unknown = {}): LoggedEvent {
  return { runId, seq, type, eventId: `${runId}-e${seq}`, payload, timestampMs: 1000 + seq };
}

function envelope(e: LoggedEvent, userId = 'u1', threadId = 't1'): Envelope {
  return { type: e.type, event_id: e.eventId, seq: e.seq, run_id: e.runId, thread_id: threadId, user_id: userId, payload: e.payload };
}

const live = (e: Envelope, at = 200): Delivery => ({ envelope: e, at, final: false });

function tr(id: number, runId: string, threadId: string, from: string | null, to: string | null): Transition {
  return { id, runId, userId: 'u1', threadId, from, to, attempts: null, owner: null, atMs: id };
}

/**
 * Two runs of u1 on two threads, run A acknowledged before run B was sent, each started and finished in turn
 * (cap 1 holds); one socket, open from the start, got everything live (A's two partial results merged).
 */
function cleanHistory(): History {
  const a = [ev('A', 1, 'message_received', { correlation_id: null }), ev('A', 2, 'agent_started'), ev('A', 3, 'partial_result', { text: 'a' }), ev('A', 4, 'partial_result', { text: 'b' }), ev('A', 5, 'agent_completed', COMPLETED)];
  const b = [ev('B', 1, 'message_received', { correlation_id: null }), ev('B', 2, 'agent_started'), ev('B', 3, 'agent_completed', COMPLETED)];
  const merged: Envelope = { ...envelope(a[3]), coalesced_from_seq: 3, payload: { text: 'ab' } };
  return {
    runs: [row('A', 't1'), row('B', 't2')],
    events: [...a, ...b],
    transitions: [tr(1, 'A', 't1', null, 'queued'), tr(2, 'B', 't2', null, 'queued'), tr(3, 'A', 't1', 'queued', 'running'), tr(4, 'A', 't1', 'running', 'completed'), tr(5, 'B', 't2', 'queued', 'running'), tr(6, 'B', 't2', 'running', 'completed')],
    requests: [
      { id: 'q1', userId: 'u1', via: 'socket', node: 'n1', correlationId: null, threadId: 't1', multitask: 'enqueue', agent: 'streamer', sentAt: 100, answeredAt: 110, outcome: { kind: 'accepted', runId: 'A', threadId: 't1', deduplicated: false } },
      { id: 'q2', userId: 'u1', via: 'http', node: 'n2', correlationId: null, threadId: 't2', multitask: 'enqueue', agent: 'streamer', sentAt: 120, answeredAt: 130, outcome: { kind: 'accepted', runId: 'B', threadId: 't2', deduplicated: false } },
    ],
    clients: [
      {
        id: 'c1',
        userId: 'u1',
        follows: ['A', 'B'],
        notes: [],
        sockets: [{ id: 'c1.s1', node: 'n3', connectedAt: 50, closedAt: null, closedBy: null, received: [...a.slice(0, 2).map((e) => live(envelope(e))), live(merged), live(envelope(a[4])), ...b.map((e) => live(envelope(e, 'u1', 't2')))] }],
      },
    ],
  };
}

/** Every kind some test made the checker report: all of them must be (the last test). */
const reported = new Set<ViolationKind>();

function kinds(h: History, limits: Limits = LIMITS): ViolationKind[] {
  const found = [...new Set(checkHistory(h, limits).violations.map((v) => v.kind))].sort();
  found.forEach((k) => reported.add(k));
  return found;
}

const socketOf = (h: History) => h.clients[0].sockets[0];
const eventOf = (h: History, runId: string, seq: number) => h.events.find((e) => e.runId === runId && e.seq === seq)!;

describe('the cluster checker', () => {
  test('a clean history passes, and the counts say what was checked', () => {
    const result = checkHistory(cleanHistory(), LIMITS);
    expect(result.violations).toEqual([]);
    expect(result.counts).toMatchObject({ runs: 2, events: 8, transitions: 6, acknowledged: 2, deliveries: 7, steadyPairs: 2, followedPairs: 2 });
    expect(result.skipped).toEqual([]);
  });

  test('an acknowledged run with no row, or with a row of another user', () => {
    const h = cleanHistory();
    h.requests.push({ ...h.requests[0], id: 'q3', outcome: { kind: 'accepted', runId: 'ghost', threadId: 't1', deduplicated: false } });
    expect(kinds(h)).toEqual(['acked_run_missing']);
    const other = cleanHistory();
    other.runs[0].userId = 'u2';
    expect(kinds(other)).toContain('acked_run_missing');
  });

  test('a run left queued or running', () => {
    const h = cleanHistory();
    h.runs[0].status = 'running';
    expect(kinds(h)).toEqual(['not_settled']);
  });

  test('a gap in the logged seqs', () => {
    const h = cleanHistory();
    h.events = h.events.filter((e) => !(e.runId === 'B' && e.seq === 2));
    h.clients[0].sockets[0].received = socketOf(h).received.filter((d) => !(d.envelope.run_id === 'B' && d.envelope.seq === 2));
    // The socket lacks seq 2 too: the stream checks say so as well.
    expect(kinds(h)).toContain('seq_gap');
    expect(kinds(cleanHistory())).not.toContain('seq_gap');
  });

  test('no terminal event, two terminal events, a terminal event that is not last', () => {
    const none = cleanHistory();
    none.events = none.events.filter((e) => !(e.runId === 'B' && e.seq === 3));
    none.clients[0].sockets[0].received = socketOf(none).received.filter((d) => !(d.envelope.run_id === 'B' && d.envelope.seq === 3));
    expect(kinds(none)).toEqual(['terminal_count']);

    const two = cleanHistory();
    two.events.push(ev('B', 4, 'agent_completed', COMPLETED));
    socketOf(two).received.push(live(envelope(eventOf(two, 'B', 4), 'u1', 't2')));
    expect(kinds(two)).toEqual(['terminal_count']);

    const late = cleanHistory();
    late.events.push(ev('B', 4, 'partial_result', { text: 'late' }));
    socketOf(late).received.push(live(envelope(eventOf(late, 'B', 4), 'u1', 't2')));
    expect(kinds(late)).toEqual(['terminal_not_last']);
  });

  test("a terminal event that does not match its row's status or error code", () => {
    const h = cleanHistory();
    h.runs[1].status = 'failed';
    expect(kinds(h)).toEqual(['status_mismatch']);
    const code = cleanHistory();
    code.runs[1].errorCode = 'WORKER_CRASHED';
    expect(kinds(code)).toEqual(['status_mismatch']);
  });

  test('more attempts than MAX_RUN_ATTEMPTS', () => {
    const h = cleanHistory();
    h.runs[1].attempts = 4;
    expect(kinds(h)).toEqual(['attempts_exceeded']);
  });

  /** Run B restarted: message_received, started, restarted…, started, completed (the socket saw it all). */
  function restarted(agentName: string, restarts: number[]): History {
    const h = cleanHistory();
    const b = [ev('B', 1, 'message_received', { correlation_id: null }), ev('B', 2, 'agent_started'), ...restarts.map((attempt, i) => ev('B', 3 + i, 'run_restarted', { attempt, reason: 'node_lost' }))];
    b.push(ev('B', b.length + 1, 'agent_started'), ev('B', b.length + 2, 'agent_completed', COMPLETED));
    h.events = [...h.events.filter((e) => e.runId !== 'B'), ...b];
    h.runs[1] = row('B', 't2', { agentName, attempts: 2 });
    h.clients[0].sockets[0].received = [...socketOf(h).received.filter((d) => d.envelope.run_id !== 'B'), ...b.map((e) => live(envelope(e, 'u1', 't2')))];
    return h;
  }

  test('a restart is announced once per lost attempt', () => {
    expect(kinds(restarted('streamer', [2]))).toEqual([]);
    expect(kinds(restarted('streamer', [2, 2]))).toEqual(['restart_duplicate']);
  });

  test('an unrepeatable agent run again', () => {
    expect(kinds(restarted('unrepeatable', [2]))).toEqual(['unrepeatable_rerun']);
  });

  test('a finished row changed afterwards', () => {
    const h = cleanHistory();
    h.transitions!.push(tr(7, 'A', 't1', 'completed', 'running'));
    expect(kinds(h)).toContain('terminal_rewritten');
    const deleted = cleanHistory();
    deleted.transitions!.push(tr(7, 'A', 't1', 'completed', null));
    expect(kinds(deleted)).toEqual(['terminal_rewritten']);
  });

  test("more active runs than the user's cap, in the audit's order", () => {
    const h = cleanHistory();
    // B claimed (#4) before A is released (#5).
    h.transitions = [tr(1, 'A', 't1', null, 'queued'), tr(2, 'B', 't2', null, 'queued'), tr(3, 'A', 't1', 'queued', 'running'), tr(4, 'B', 't2', 'queued', 'running'), tr(5, 'A', 't1', 'running', 'completed'), tr(6, 'B', 't2', 'running', 'completed')];
    const found = checkHistory(h, LIMITS).violations;
    expect(found.map((v) => v.kind)).toEqual(['cap_exceeded']);
    expect(found[0]).toMatchObject({ runId: 'B', otherRunIds: ['A'] });
    expect(kinds(h, { ...LIMITS, userMaxConcurrentRuns: 2 })).toEqual([]);
  });

  test('a run a node claimed holds its slot before it starts (owner set, still queued)', () => {
    const h = cleanHistory();
    const claimed = (id: number, runId: string, threadId: string): Transition => ({ ...tr(id, runId, threadId, 'queued', 'queued'), owner: 'lease-1' });
    h.transitions = [tr(1, 'A', 't1', null, 'queued'), tr(2, 'B', 't2', null, 'queued'), claimed(3, 'A', 't1'), claimed(4, 'B', 't2'), tr(5, 'A', 't1', 'queued', 'running'), tr(6, 'A', 't1', 'running', 'completed'), tr(7, 'B', 't2', 'queued', 'running'), tr(8, 'B', 't2', 'running', 'completed')];
    expect(kinds(h)).toEqual(['cap_exceeded']);
    // Given back (a drain, a takeover: no owner, queued) before the other is claimed: no breach.
    h.transitions = [tr(1, 'A', 't1', null, 'queued'), tr(2, 'B', 't2', null, 'queued'), claimed(3, 'A', 't1'), tr(4, 'A', 't1', 'queued', 'queued'), claimed(5, 'B', 't2'), tr(6, 'B', 't2', 'queued', 'running'), tr(7, 'B', 't2', 'running', 'completed'), claimed(8, 'A', 't1'), tr(9, 'A', 't1', 'queued', 'running'), tr(10, 'A', 't1', 'running', 'completed')];
    expect(kinds(h)).toEqual([]);
  });

  test('two active runs of one conversation, whatever the cap', () => {
    const h = cleanHistory();
    for (const r of h.runs) r.threadId = 't1';
    h.requests[1].threadId = 't1';
    (h.requests[1].outcome as { threadId: string }).threadId = 't1';
    h.transitions = [tr(1, 'A', 't1', null, 'queued'), tr(2, 'B', 't1', null, 'queued'), tr(3, 'A', 't1', 'queued', 'running'), tr(4, 'B', 't1', 'queued', 'running'), tr(5, 'A', 't1', 'running', 'completed'), tr(6, 'B', 't1', 'running', 'completed')];
    expect(kinds(h, { ...LIMITS, userMaxConcurrentRuns: 5 })).toEqual(['thread_overlap']);
  });

  test('a run that overtook one acknowledged before it was sent breaks FIFO; concurrent ones do not', () => {
    const h = cleanHistory();
    h.transitions = [tr(1, 'A', 't1', null, 'queued'), tr(2, 'B', 't2', null, 'queued'), tr(3, 'B', 't2', 'queued', 'running'), tr(4, 'B', 't2', 'running', 'completed'), tr(5, 'A', 't1', 'queued', 'running'), tr(6, 'A', 't1', 'running', 'completed')];
    const found = checkHistory(h, LIMITS).violations;
    expect(found.map((v) => v.kind)).toEqual(['fifo']);
    expect(found[0]).toMatchObject({ runId: 'B', otherRunIds: ['A'] });

    // A's acknowledgement came after B was sent: the two were concurrent, either order is FIFO.
    const concurrent = structuredClone(h);
    concurrent.requests[0].answeredAt = 125;
    expect(kinds(concurrent)).toEqual([]);
    // A re-run (a second claim after a requeue) is not a start.
    const rerun = cleanHistory();
    rerun.transitions = [tr(1, 'A', 't1', null, 'queued'), tr(2, 'B', 't2', null, 'queued'), tr(3, 'A', 't1', 'queued', 'running'), tr(4, 'A', 't1', 'running', 'queued'), tr(5, 'B', 't2', 'queued', 'running'), tr(6, 'B', 't2', 'running', 'completed'), tr(7, 'A', 't1', 'queued', 'running'), tr(8, 'A', 't1', 'running', 'completed')];
    expect(kinds(rerun)).toEqual([]);
  });

  test('single-node mode skips caps, conversations and FIFO, and says so', () => {
    const h = cleanHistory();
    h.transitions = [tr(1, 'A', 't1', null, 'queued'), tr(2, 'B', 't2', null, 'queued'), tr(3, 'B', 't2', 'queued', 'running'), tr(4, 'A', 't1', 'queued', 'running'), tr(5, 'B', 't2', 'running', 'completed'), tr(6, 'A', 't1', 'running', 'completed')];
    expect(kinds(h)).toEqual(['cap_exceeded', 'fifo']);
    const result = checkHistory(h, { ...LIMITS, queueInDatabase: false });
    expect(result.violations).toEqual([]);
    expect(result.skipped.join()).toMatch(/single node/);
  });

  test('one correlation id acknowledged as two runs, or stored twice', () => {
    const h = cleanHistory();
    h.requests[0].correlationId = 'c1';
    h.requests[1].correlationId = 'c1';
    expect(kinds(h)).toEqual(['idempotency']);
    const rows = cleanHistory();
    rows.runs[0].correlationId = 'c1';
    rows.runs[1].correlationId = 'c1';
    expect(kinds(rows)).toEqual(['idempotency']);
  });

  test("an event of another user's run on a socket", () => {
    const h = cleanHistory();
    h.runs.push(row('X', 't9', { userId: 'u2' }));
    const x = [ev('X', 1, 'message_received', { correlation_id: null }), ev('X', 2, 'agent_completed', COMPLETED)];
    h.events.push(...x);
    socketOf(h).received.push(live(envelope(x[0], 'u2', 't9')));
    expect(kinds(h)).toEqual(['foreign_event']);
  });

  test('a repeated or backward seq on a socket, and across the sockets of a client', () => {
    const h = cleanHistory();
    socketOf(h).received.splice(2, 0, live(envelope(eventOf(h, 'A', 2))));
    expect(kinds(h)).toEqual(['stream_order']);

    const across = cleanHistory();
    const first = socketOf(across);
    first.closedAt = 300;
    first.closedBy = 'server';
    across.clients[0].sockets.push({ id: 'c1.s2', node: 'n1', connectedAt: 310, closedAt: null, closedBy: null, received: [live(envelope(eventOf(across, 'B', 3), 'u1', 't2'), 320)] });
    expect(kinds(across)).toEqual(['stream_order']);
  });

  test("a socket sent a run's later event without the one before it (a skipped seq)", () => {
    const h = cleanHistory();
    // A's seq 2 dropped on its way: the socket went from 1 to the merged 3..4.
    socketOf(h).received.splice(1, 1);
    expect(kinds(h)).toEqual(['client_incomplete', 'stream_gap', 'stream_incomplete']);
    // Closed before the end (not owed everything live), it still shows the gap, and its client lacks seq 2.
    socketOf(h).closedAt = 300;
    h.clients[0].sockets.push({ id: 'c1.s2', node: 'n2', connectedAt: 310, closedAt: null, closedBy: null, received: [] });
    expect(kinds(h)).toEqual(['client_incomplete', 'stream_gap']);
  });

  test('a delivered event that is not the logged one: payload, id, phantom seq, merged text', () => {
    const payload = cleanHistory();
    socketOf(payload).received[1].envelope.payload = { status: 'running', forged: true };
    expect(kinds(payload)).toEqual(['stream_mismatch']);

    const id = cleanHistory();
    socketOf(id).received[1].envelope.event_id = 'other';
    expect(kinds(id)).toEqual(['stream_mismatch']);

    const phantom = cleanHistory();
    socketOf(phantom).received.push(live({ ...envelope(eventOf(phantom, 'B', 3), 'u1', 't2'), seq: 4, type: 'partial_result', payload: { text: 'ghost' } }));
    expect(kinds(phantom)).toEqual(['stream_mismatch']);

    const merged = cleanHistory();
    socketOf(merged).received[2].envelope.payload = { text: 'ba' };
    expect(kinds(merged)).toEqual(['stream_mismatch']);
  });

  test('a socket open through a run that missed an event live, even if the catch-up brought it', () => {
    const h = cleanHistory();
    const s = socketOf(h);
    const i = s.received.findIndex((d) => d.envelope.run_id === 'B' && d.envelope.seq === 2);
    s.received[i] = { ...s.received[i], final: true };
    const found = checkHistory(h, LIMITS).violations;
    expect(found.map((v) => v.kind)).toEqual(['stream_incomplete']);
    expect(found[0].message).toMatch(/did not receive seq 2 of 3/);

    // A socket that connected after the run was requested owes it nothing live.
    const later = cleanHistory();
    socketOf(later).connectedAt = 125;
    later.clients[0].sockets[0].received = socketOf(later).received.map((d) => (d.envelope.run_id === 'A' ? { ...d, final: true } : d));
    expect(kinds(later)).toEqual([]);
  });

  test('a client that, after catching up, still lacks events of a run it follows', () => {
    const h = cleanHistory();
    const s = socketOf(h);
    s.closedAt = 300;
    s.closedBy = 'server';
    s.received = s.received.filter((d) => !(d.envelope.run_id === 'B' && d.envelope.seq > 1));
    h.clients[0].sockets.push({ id: 'c1.s2', node: 'n2', connectedAt: 310, closedAt: null, closedBy: null, received: [] });
    expect(kinds(h)).toEqual(['client_incomplete']);
    h.clients[0].sockets[1].received = [eventOf(h, 'B', 2), eventOf(h, 'B', 3)].map((e) => ({ envelope: envelope(e, 'u1', 't2'), at: 320, final: true }));
    expect(kinds(h)).toEqual([]);
  });

  test('without an audit the checks that need it are skipped, and said to be', () => {
    const h = cleanHistory();
    h.transitions = null;
    const result = checkHistory(h, LIMITS);
    expect(result.violations).toEqual([]);
    expect(result.skipped).toHaveLength(1);
  });

  test('every kind of violation was planted and found by a test above', () => {
    expect([...reported].sort()).toEqual(Object.keys(VIOLATION_KINDS).sort());
  });
});
