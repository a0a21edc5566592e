/**
 * Delivery of run events to a user's sockets, one socket at a time, so each socket gets every event of its
 * user's runs exactly once and in order (runs that start while it is connected, and runs it subscribes to):
 * - a per-socket, per-run cursor (the last seq delivered) drops anything already delivered;
 * - subscribe_run replays the log after the client's last seq while live events for that run are held,
 *   then releases the held ones past the cursor: no gap and no duplicate at the seam;
 * - a socket that lags (its outbound buffer over a quarter of the budget) gets consecutive partial_result
 *   events merged into one envelope (`coalesced_from_seq` .. `seq`, texts joined) every COALESCE_MS;
 * - a socket whose outbound buffer is over budget (packets or bytes) stops getting live events of a run and
 *   is told `resync_required {run_id, last_seq}` once, so it replays from the log instead of growing our memory;
 * - when the event bus may have lost events of a user (gap), each of the user's sockets is told the same for
 *   every run it follows and has not finished, and those runs wait the same way for its replay; so does a
 *   socket that sees a hole in a run's seqs (an event committed by a node that died before publishing it);
 * - one replay sends at most `maxAckBytes`; the rest is read with another subscribe_run from the cursor;
 * - several nodes: a run's first event is published by the node that accepted it, the rest by the node that
 *   claimed it, so a socket may get event 2 before event 1. Events of a run it does not follow yet are kept a
 *   moment (a few per socket, for EARLY_MS) and sent after event 1; those it could not keep it replays (resync).
 *   Event 1 may never come (the accepting node died between its commit and its publish): a run still waiting
 *   EARLY_MS after its first early event is handed to `eventOneMissing`, which replays it from the log if it
 *   began after the socket joined, and otherwise marks it not followed (a run the socket joined mid-stream).
 */
import type { RunEventEnvelope } from '../../protocol/events.js';
import { watchOutbox, type Outbox } from './outbox.js';
import type { AtollSocket } from './socket-types.js';

type Socket = AtollSocket;

/**
 * Sends an envelope under its type's event name. socket.io's typed emit cannot tie a name to its payload
 * when the envelope's type is a union; the contract (ServerToClientEvents) says each run event carries
 * its own envelope, which is what this does.
 */
function emitEnvelope(socket: Socket, e: RunEventEnvelope): void {
  (socket.emit as (event: RunEventEnvelope['type'], envelope: RunEventEnvelope) => boolean)(e.type, e);
}

interface SocketState {
  socket: Socket;
  outbox: Outbox;
  cursors: Map<string, number>;
  /** Runs being replayed on this socket, with the live events held meanwhile. */
  held: Map<string, RunEventEnvelope[]>;
  /** Runs paused for this socket until it resubscribes. */
  paused: Set<string>;
  /** partial_result events merged while the socket lags, per run, sent as one envelope. */
  merging: Map<string, { events: RunEventEnvelope[]; timer: NodeJS.Timeout }>;
  /** Runs being replayed when the bus signalled a gap: their held events may have holes. */
  gapped: Set<string>;
  /** The replay under way per run (the last one asked): a later one waits for it. */
  replaying: Map<string, Promise<ReplayResult>>;
  /** The last seq sent of runs this socket saw finish (the most recent FINISHED_MEMORY): never sent again. */
  finished: Map<string, number>;
  /** When it was added: the runs its user starts from then on are its to follow. */
  since: number;
  /**
   * Events of runs not followed yet, which came before the run's event 1 (see the top): kept for the run's
   * event 1, in arrival order; `events` null once some were let go (too many, too late): then event 1 is
   * followed by resync_required. Also left by runs a socket joined mid-stream (whose event 1 it never gets).
   */
  early: Map<string, EarlyEntry>;
  /** Events kept in `early`, all runs together. */
  earlyKept: number;
  /** Looks for early entries whose event 1 is overdue (set while some wait). */
  earlySweep: NodeJS.Timeout | null;
}

interface EarlyEntry {
  events: RunEventEnvelope[] | null;
  since: number;
  /** Handed to eventOneMissing: no longer waiting for event 1 to come by itself. */
  asked: boolean;
  /** A run that began before the socket joined: its live events are not this socket's (subscribe_run joins it). */
  notFollowed: boolean;
}

const FINISHED_MEMORY = 1000;
/**
 * Early events (see SocketState.early): how long they are kept (event 1 comes within a few milliseconds, or
 * hundreds on a starved machine), how many per socket, and how many runs are remembered per socket.
 */
const EARLY_MS = 2000;
const EARLY_EVENTS = 32;
const EARLY_RUNS = 256;

/** Remembers that the socket was sent a run's terminal event at `seq`. */
function rememberFinished(state: SocketState, runId: string, seq: number): void {
  state.finished.set(runId, seq);
  if (state.finished.size > FINISHED_MEMORY) state.finished.delete(state.finished.keys().next().value as string);
}

const COALESCE_MS = 50;

export interface DeliveryOptions {
  /** Packets waiting in a socket's write buffer beyond which it counts as stalled. */
  maxBufferedPackets: number;
  /** Bytes waiting for a socket beyond which it counts as stalled (SOCKET_MAX_BUFFERED_BYTES). */
  maxBufferedBytes: number;
  /** The most one answer (an ack, one replay) may send. */
  maxAckBytes: number;
  onDropped: (n: number) => void;
  /**
   * Runs whose events reached this socket but whose event 1 did not within EARLY_MS (or that were evicted from
   * the early memory). Replays those that began at or after `since` (when the socket joined) and resolves with
   * the others: runs the socket joined mid-stream, whose live events it then ignores until it subscribes.
   */
  eventOneMissing: (socket: Socket, since: number, runIds: string[]) => Promise<string[]>;
}

export interface ReplayResult {
  /** The last seq this socket has of the run. */
  lastSeq: number;
  /** Set when the replay stopped at its size cap: subscribe again from here for the rest. */
  nextAfterSeq: number | null;
}

export function createDelivery(opts: DeliveryOptions) {
  const byUser = new Map<string, Set<SocketState>>();
  const bySocket = new Map<string, SocketState>();

  /** How far over its budget a socket's unsent data is: >1 over, >0.25 lagging. */
  function load(state: SocketState): number {
    return Math.max(state.outbox.packets() / opts.maxBufferedPackets, state.outbox.bytes() / opts.maxBufferedBytes);
  }

  function send(state: SocketState, e: RunEventEnvelope): void {
    if (state.finished.has(e.run_id)) return;
    const last = state.cursors.get(e.run_id);
    // A socket follows a run from its first event, or from where it subscribed: a run already under way
    // when the socket connected (a reconnect, a new tab) is joined with subscribe_run, never mid-stream.
    // Paused first: a run paused at its event 1 (the socket over budget) has no cursor, and its later events are
    // the replay's to send, not early ones to keep.
    if (state.paused.has(e.run_id)) {
      opts.onDropped(1);
      // Over: what the socket missed is the replay's, from what it was sent, which is all that is kept of it (and
      // of at most FINISHED_MEMORY such runs). Kept paused, every run that ended while the socket was over its
      // budget stayed in its state until it left (helper-77: 17 MiB for 200,000 runs of one socket).
      if (e.type === 'agent_completed') {
        state.paused.delete(e.run_id);
        rememberFinished(state, e.run_id, state.cursors.get(e.run_id) ?? 0);
        state.cursors.delete(e.run_id);
      }
      return;
    }
    if (last === undefined && e.seq !== 1) return keepEarly(state, e);
    if (last !== undefined && e.seq <= last) return;
    // A hole: events this socket never got (a node died after committing them, before publishing; a write that
    // failed was never published). The client replays from its cursor, as after any gap.
    if (last !== undefined && e.seq > last + 1) {
      pause(state, e.run_id, last);
      opts.onDropped(1);
      return;
    }
    const buffered = load(state);
    if (buffered > 1) {
      pause(state, e.run_id, state.cursors.get(e.run_id) ?? e.seq - 1);
      opts.onDropped(1);
      return;
    }
    if (e.type === 'partial_result' && (buffered > 0.25 || state.merging.has(e.run_id))) {
      const merging = state.merging.get(e.run_id);
      if (merging) merging.events.push(e);
      else state.merging.set(e.run_id, { events: [e], timer: setTimeout(() => flushMerged(state, e.run_id), COALESCE_MS) });
      state.cursors.set(e.run_id, e.seq);
      return;
    }
    flushMerged(state, e.run_id);
    emitEnvelope(state.socket, e);
    if (e.type === 'agent_completed') {
      state.cursors.delete(e.run_id);
      rememberFinished(state, e.run_id, e.seq);
    } else state.cursors.set(e.run_id, e.seq);
    if (e.seq === 1) sendEarly(state, e.run_id);
  }

  /** Keeps an event of a run this socket does not follow yet, for the run's event 1 (bounded: see EARLY_*). */
  function keepEarly(state: SocketState, e: RunEventEnvelope): void {
    const now = Date.now();
    let entry = state.early.get(e.run_id);
    if (!entry) {
      if (state.early.size >= EARLY_RUNS) evictEarly(state);
      state.early.set(e.run_id, (entry = { events: [], since: now, asked: false, notFollowed: false }));
      state.earlySweep ??= sweepLater(state, EARLY_MS + 1);
    }
    if (entry.events === null) return;
    // The budget is full: the sweep's work now, rather than at its timer (which a busy loop may have delayed).
    if (state.earlyKept >= EARLY_EVENTS) sweepNow(state);
    if (state.earlyKept >= EARLY_EVENTS || now - entry.since > EARLY_MS) return letGo(state, entry);
    entry.events.push(e);
    state.earlyKept++;
  }

  /** Early events let go of are replayed from the log after the run's event 1, if it ever comes. */
  function letGo(state: SocketState, entry: { events: RunEventEnvelope[] | null }): void {
    state.earlyKept -= entry.events?.length ?? 0;
    entry.events = null;
  }

  /**
   * Makes room in the early memory: the oldest entry no longer waiting for event 1 goes first; if every one
   * still waits, the oldest goes and its run is handed to eventOneMissing (event 1, when it comes, then finds
   * no entry: the replay from the log, which is from the socket's cursor, fills in what was kept).
   */
  function evictEarly(state: SocketState): void {
    let victim: string | null = null;
    for (const [runId, entry] of state.early) {
      if (entry.asked || entry.notFollowed) {
        victim = runId;
        break;
      }
    }
    if (victim !== null) return dropEarly(state, victim);
    const oldest = state.early.keys().next().value as string;
    dropEarly(state, oldest);
    askEventOne(state, [oldest]);
  }

  /** Hands the runs whose event 1 is overdue to eventOneMissing (see the top), then checks again later. */
  function sweepEarly(state: SocketState): void {
    state.earlySweep = null;
    const now = Date.now();
    const overdue: string[] = [];
    let next = Infinity;
    for (const [runId, entry] of state.early) {
      if (entry.asked || entry.notFollowed) continue;
      if (now - entry.since > EARLY_MS) {
        letGo(state, entry);
        entry.asked = true;
        overdue.push(runId);
      } else next = Math.min(next, entry.since + EARLY_MS + 1 - now);
    }
    if (overdue.length > 0) askEventOne(state, overdue);
    if (next !== Infinity) state.earlySweep = sweepLater(state, next);
  }

  function sweepNow(state: SocketState): void {
    if (state.earlySweep) clearTimeout(state.earlySweep);
    sweepEarly(state);
  }

  function sweepLater(state: SocketState, ms: number): NodeJS.Timeout {
    // Unref'd: a socket's sweep never keeps a process alive that is otherwise done.
    return setTimeout(() => sweepEarly(state), ms).unref();
  }

  function askEventOne(state: SocketState, runIds: string[]): void {
    opts.eventOneMissing(state.socket, state.since, runIds).then(
      (notFollowed) => {
        for (const runId of notFollowed) {
          const entry = state.early.get(runId);
          if (entry) entry.notFollowed = true;
        }
      },
      // Not known (the database did not answer): asked again at the next sweep.
      () => {
        if (!bySocket.has(state.socket.id)) return;
        for (const runId of runIds) {
          const entry = state.early.get(runId);
          if (entry) entry.asked = false;
        }
        state.earlySweep ??= sweepLater(state, EARLY_MS + 1);
      },
    );
  }

  function dropEarly(state: SocketState, runId: string): void {
    state.earlyKept -= state.early.get(runId)?.events?.length ?? 0;
    state.early.delete(runId);
  }

  /** After a run's event 1: what came before it, in order; if some was let go, the client replays (resync). */
  function sendEarly(state: SocketState, runId: string): void {
    const entry = state.early.get(runId);
    if (!entry) return;
    dropEarly(state, runId);
    if (entry.events !== null) {
      // In seq order; a hole among them pauses the run as any hole does.
      for (const e of entry.events.sort((a, b) => a.seq - b.seq)) send(state, e);
    } else if (state.cursors.has(runId) && !state.paused.has(runId)) pause(state, runId, state.cursors.get(runId)!);
  }

  /**
   * Stops live events of a run for this socket until it replays (subscribe_run), and tells it so once:
   * what it was sent so far (merged partials included), then resync_required from its last seq.
   */
  function pause(state: SocketState, runId: string, lastSeq: number): void {
    flushMerged(state, runId);
    state.paused.add(runId);
    state.socket.emit('resync_required', { run_id: runId, last_seq: lastSeq });
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
      emitEnvelope(state.socket, last);
      return;
    }
    const text = events.map((x) => String((x.payload as { text?: unknown }).text ?? '')).join('');
    emitEnvelope(state.socket, { ...last, payload: { text }, coalesced_from_seq: events[0].seq });
  }

  return {
    add(userId: string, socket: Socket): void {
      const state: SocketState = { socket, outbox: watchOutbox(socket.conn), cursors: new Map(), held: new Map(), paused: new Set(), merging: new Map(), gapped: new Set(), replaying: new Map(), finished: new Map(), since: Date.now(), early: new Map(), earlyKept: 0, earlySweep: null };
      bySocket.set(socket.id, state);
      if (!byUser.has(userId)) byUser.set(userId, new Set());
      byUser.get(userId)!.add(state);
    },
    remove(userId: string, socket: Socket): void {
      const state = bySocket.get(socket.id);
      bySocket.delete(socket.id);
      for (const m of state?.merging.values() ?? []) clearTimeout(m.timer);
      if (state?.earlySweep) clearTimeout(state.earlySweep);
      state?.outbox.stop();
      const set = byUser.get(userId);
      if (state && set) {
        set.delete(state);
        if (set.size === 0) byUser.delete(userId);
      }
    },
    socketsOf(userId: string): number {
      return byUser.get(userId)?.size ?? 0;
    },
    /** Bytes sent to all sockets and not yet taken by them. */
    outboundBytes(): number {
      let total = 0;
      for (const state of bySocket.values()) total += state.outbox.bytes();
      return total;
    },
    /** Bytes sent to the socket and not yet taken by it. */
    bufferedBytes(socket: Socket): number {
      return bySocket.get(socket.id)?.outbox.bytes() ?? 0;
    },
    /** Runs the socket's state holds: followed, paused, or remembered as finished (for tests: it stays bounded). */
    runsHeld(socket: Socket): number {
      const state = bySocket.get(socket.id);
      return state ? new Set([...state.cursors.keys(), ...state.paused, ...state.finished.keys()]).size : 0;
    },
    /** Whether the socket's unsent data is over its budget (then answers that could be large are refused). */
    overBudget(socket: Socket): boolean {
      const state = bySocket.get(socket.id);
      return state ? load(state) > 1 : false;
    },
    /** Sockets that have had data outstanding, taking none of it, for longer than `ms`. */
    stalled(ms: number): { socket: Socket; bytes: number; stalledMs: number }[] {
      const out = [];
      for (const state of bySocket.values()) {
        const stalledMs = state.outbox.stalledMs();
        if (stalledMs > ms) out.push({ socket: state.socket, bytes: state.outbox.bytes(), stalledMs });
      }
      return out;
    },
    /**
     * The bus may have missed events of this user's runs: each of the user's sockets is told resync_required
     * for every run it follows (not finished, not already paused) and gets no live events of it until it
     * replays, as when it falls behind its budget. A run being replayed finishes its replay first, then is
     * paused at the replay's cursor: telling the client mid-replay would start a second replay beside it.
     */
    gap(userId: string): void {
      for (const state of byUser.get(userId) ?? []) {
        for (const runId of state.held.keys()) state.gapped.add(runId);
        for (const [runId, lastSeq] of state.cursors) {
          if (!state.held.has(runId) && !state.paused.has(runId)) pause(state, runId, lastSeq);
        }
      }
    },
    /**
     * The user's sockets, each with when it joined and whether it knows a run (follows it, saw it finish, or is
     * replaying it): after a bus gap, runs that started during it are unknown to sockets on other nodes.
     */
    socketStates(userId: string): { socket: Socket; since: number; knows: (runId: string) => boolean }[] {
      return [...(byUser.get(userId) ?? [])].map((state) => ({
        socket: state.socket,
        since: state.since,
        knows: (runId: string) => state.cursors.has(runId) || state.finished.has(runId) || state.held.has(runId) || state.replaying.has(runId) || state.paused.has(runId),
      }));
    },
    /** Tells the socket to go on with subscribe_run after `lastSeq` (a replay it did not ask for was cut short). */
    askResync(socket: Socket, runId: string, lastSeq: number): void {
      const state = bySocket.get(socket.id);
      if (state) pause(state, runId, lastSeq);
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
    async replay(socket: Socket, runId: string, afterSeq: number, readLog: (after: number) => Promise<RunEventEnvelope[]>): Promise<ReplayResult> {
      const state = bySocket.get(socket.id);
      if (!state) return { lastSeq: afterSeq, nextAfterSeq: null };
      // A replay of this run already under way on this socket (a resume and a resync notice crossing): this one
      // waits for it, then sends only what it has not (both would otherwise send the same events).
      const before = state.replaying.get(runId);
      if (before) {
        const mine = before.then(
          (done) => replayNow(state, runId, Math.max(afterSeq, done.lastSeq), readLog),
          () => replayNow(state, runId, afterSeq, readLog),
        );
        state.replaying.set(runId, mine);
        return mine.finally(() => state.replaying.get(runId) === mine && state.replaying.delete(runId));
      }
      const mine = replayNow(state, runId, afterSeq, readLog);
      state.replaying.set(runId, mine);
      return mine.finally(() => state.replaying.get(runId) === mine && state.replaying.delete(runId));
    },
  };

  async function replayNow(state: SocketState, runId: string, askedAfter: number, readLog: (after: number) => Promise<RunEventEnvelope[]>): Promise<ReplayResult> {
    {
      // Never an older seq than this socket was sent already (README "Replay without gaps or duplicates"), also
      // when it waited for a replay that failed half-way (its cursor is where that one stopped).
      const sentSeq = state.cursors.get(runId) ?? state.finished.get(runId);
      const afterSeq = sentSeq === undefined ? askedAfter : Math.max(askedAfter, sentSeq);
      flushMerged(state, runId);
      // The log has every event kept early (each was committed before it was published).
      dropEarly(state, runId);
      state.held.set(runId, []);
      state.paused.delete(runId);
      state.cursors.set(runId, afterSeq);
      let cursor = afterSeq;
      let sent = 0;
      let cut = false;
      let finished = false;
      try {
        read: for (;;) {
          const page = await readLog(cursor);
          if (page.length === 0) break;
          for (const e of page) {
            // At least one event per replay, so a client following the cursor always advances.
            const bytes = Buffer.byteLength(JSON.stringify(e));
            if (sent > 0 && sent + bytes > opts.maxAckBytes) {
              cut = true;
              break read;
            }
            emitEnvelope(state.socket, e);
            sent += bytes;
            cursor = e.seq;
            if (e.type === 'agent_completed') finished = true;
          }
        }
      } finally {
        const held = state.held.get(runId) ?? [];
        state.held.delete(runId);
        const gapped = state.gapped.delete(runId);
        state.cursors.set(runId, cursor);
        // Cut short: the run waits, paused, for the next subscribe_run from the cursor; its live events
        // would leave a gap. A bus gap during the replay: the same, and the client is told.
        if (cut) state.paused.add(runId);
        else if (finished || state.finished.has(runId)) {
          // Finished now, or before (a replay of a run it saw end): no cursor stays behind for it.
          state.cursors.delete(runId);
          rememberFinished(state, runId, cursor);
        }
        else {
          if (gapped) pause(state, runId, cursor);
          for (const e of held) send(state, e);
        }
      }
      return { lastSeq: state.cursors.get(runId) ?? cursor, nextAfterSeq: cut ? cursor : null };
    }
  }
}

export type Delivery = ReturnType<typeof createDelivery>;
