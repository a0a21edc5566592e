/**
 * Delivery of run events to a user's sockets, one socket at a time, so each socket gets every event of its
 * user's runs exactly once and in order (runs that start while it is connected, and runs it subscribes to):
 * - a per-socket, per-run cursor (the last seq delivered) drops anything already delivered;
 * - subscribe_run replays the log after the client's last seq while live events for that run are held,
 *   then releases the held ones past the cursor: no gap and no duplicate at the seam;
 * - a socket that lags (its outbound buffer over a quarter of the budget) gets consecutive partial_result
 *   events merged into one envelope (`coalesced_from_seq` .. `seq`, texts joined) every COALESCE_MS;
 * - a socket whose outbound buffer is over budget stops getting live events of a run and is told
 *   `resync_required {run_id, last_seq}` once, so it replays from the log instead of growing our memory.
 */
import type { Socket } from 'socket.io';
import type { RunEventEnvelope } from '../protocol/events.js';

interface SocketState {
  socket: Socket;
  cursors: Map<string, number>;
  /** Runs being replayed on this socket, with the live events held meanwhile. */
  held: Map<string, RunEventEnvelope[]>;
  /** Runs paused for this socket until it resubscribes. */
  paused: Set<string>;
  /** partial_result events merged while the socket lags, per run, sent as one envelope. */
  merging: Map<string, { events: RunEventEnvelope[]; timer: NodeJS.Timeout }>;
}

const COALESCE_MS = 50;

export interface DeliveryOptions {
  /** Packets waiting in a socket's write buffer beyond which it counts as stalled. */
  maxBufferedPackets: number;
  onDropped: (n: number) => void;
}

export function createDelivery(opts: DeliveryOptions) {
  const byUser = new Map<string, Set<SocketState>>();
  const bySocket = new Map<string, SocketState>();

  function bufferedPackets(socket: Socket): number {
    return (socket.conn as unknown as { writeBuffer?: unknown[] }).writeBuffer?.length ?? 0;
  }

  function send(state: SocketState, e: RunEventEnvelope): void {
    const last = state.cursors.get(e.run_id);
    // A socket follows a run from its first event, or from where it subscribed: a run already under way
    // when the socket connected (a reconnect, a new tab) is joined with subscribe_run, never mid-stream.
    if (last === undefined && e.seq !== 1) return;
    if (last !== undefined && e.seq <= last) return;
    if (state.paused.has(e.run_id)) {
      opts.onDropped(1);
      return;
    }
    const buffered = bufferedPackets(state.socket);
    if (buffered > opts.maxBufferedPackets) {
      flushMerged(state, e.run_id);
      state.paused.add(e.run_id);
      opts.onDropped(1);
      state.socket.emit('resync_required', { run_id: e.run_id, last_seq: state.cursors.get(e.run_id) ?? e.seq - 1 });
      return;
    }
    if (e.type === 'partial_result' && (buffered > opts.maxBufferedPackets / 4 || state.merging.has(e.run_id))) {
      const merging = state.merging.get(e.run_id);
      if (merging) merging.events.push(e);
      else state.merging.set(e.run_id, { events: [e], timer: setTimeout(() => flushMerged(state, e.run_id), COALESCE_MS) });
      state.cursors.set(e.run_id, e.seq);
      return;
    }
    flushMerged(state, e.run_id);
    state.socket.emit(e.type, e);
    if (e.type === 'agent_completed') state.cursors.delete(e.run_id);
    else state.cursors.set(e.run_id, e.seq);
  }

  /** Sends the partial_result events merged so far for a run as one envelope. */
  function flushMerged(state: SocketState, runId: string): void {
    const merging = state.merging.get(runId);
    if (!merging) return;
    clearTimeout(merging.timer);
    state.merging.delete(runId);
    const { events } = merging;
    const last = events[events.length - 1];
    if (events.length === 1) {
      state.socket.emit(last.type, last);
      return;
    }
    const text = events.map((x) => String((x.payload as { text?: unknown }).text ?? '')).join('');
    state.socket.emit(last.type, { ...last, payload: { text }, coalesced_from_seq: events[0].seq });
  }

  return {
    add(userId: string, socket: Socket): void {
      const state: SocketState = { socket, cursors: new Map(), held: new Map(), paused: new Set(), merging: new Map() };
      bySocket.set(socket.id, state);
      if (!byUser.has(userId)) byUser.set(userId, new Set());
      byUser.get(userId)!.add(state);
    },
    remove(userId: string, socket: Socket): void {
      const state = bySocket.get(socket.id);
      bySocket.delete(socket.id);
      for (const m of state?.merging.values() ?? []) clearTimeout(m.timer);
      const set = byUser.get(userId);
      if (state && set) {
        set.delete(state);
        if (set.size === 0) byUser.delete(userId);
      }
    },
    socketsOf(userId: string): number {
      return byUser.get(userId)?.size ?? 0;
    },
    deliver(e: RunEventEnvelope): void {
      for (const state of byUser.get(e.user_id) ?? []) {
        const held = state.held.get(e.run_id);
        if (held) held.push(e);
        else send(state, e);
      }
    },
    /**
     * Replays a run's logged events after `afterSeq` to one socket, then resumes it live. `readLog` pages
     * through the persisted log; events are persisted before they are delivered, so the log plus the
     * events held during the read cover everything.
     */
    async replay(socket: Socket, runId: string, afterSeq: number, readLog: (after: number) => Promise<RunEventEnvelope[]>): Promise<number> {
      const state = bySocket.get(socket.id);
      if (!state) return afterSeq;
      flushMerged(state, runId);
      state.held.set(runId, []);
      state.paused.delete(runId);
      state.cursors.set(runId, afterSeq);
      let cursor = afterSeq;
      try {
        for (;;) {
          const page = await readLog(cursor);
          if (page.length === 0) break;
          for (const e of page) {
            state.socket.emit(e.type, e);
            cursor = e.seq;
          }
        }
      } finally {
        const held = state.held.get(runId) ?? [];
        state.held.delete(runId);
        state.cursors.set(runId, cursor);
        for (const e of held) send(state, e);
      }
      return state.cursors.get(runId) ?? cursor;
    },
  };
}

export type Delivery = ReturnType<typeof createDelivery>;
