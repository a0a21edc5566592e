/**
 * The front's Prometheus registry (one per process, never prom-client's global). Cells report their
 * numbers as IPC messages; the front turns them into gauges here, and merges each live cell's own
 * default process metrics (labelled `cell`, by slot) into the scrape, so one scrape shows the whole node.
 * Every series carries `node` (NODE_ID): several nodes' scrapes can be summed or told apart.
 * docs/metrics.md is generated from this file (scripts/metrics-doc.ts); a test keeps them equal.
 */
import { monitorEventLoopDelay } from 'node:perf_hooks';
import client from 'prom-client';
import { renderWithCells, type CellProcessMetrics } from './metrics-merge.js';
import { REFUSAL_REASONS } from '../protocol/db-messages.js';
import { LEAK_KINDS, RECYCLE_REASONS } from '../protocol/cell-messages.js';
import type { ErrorCode } from '../protocol/errors.js';
import type { TerminalStatus } from '../protocol/events.js';
import { CELL_DEATH_CAUSES } from './cells/exit-cause.js';
import type { KillerEvidence } from './runs/cell-killers.js';

export interface CapacitySnapshot {
  cellsAlive: number;
  quarantineCellsAlive: number;
  workersAlive: number;
  workersBusy: number;
  activeRuns: number;
  queuedRuns: number;
  activeContexts: number;
  liveAgentInstances: number;
  dbConnections: { process: string; count: number }[];
  /** Several nodes: whether each of the node's two Redis connections is up (none on a single node). */
  redisConnections: { connection: string; up: boolean }[];
  /** `cell` is the slot's name (`cell1`), never the generation's id: a cell that keeps dying mints no new series. */
  cellMemory: { cell: string; kind: 'heap' | 'rss' | 'external'; bytes: number }[];
  /** The generation of the cell in each slot now: which process the slot's series are, as logs name it (`cell1-g7`). */
  cellGenerations: { cell: string; generation: number }[];
  socketConnections: number;
  /** Bytes sent to sockets and not yet taken by them, all sockets together (what slow clients cost the front). */
  socketOutboundBytes: number;
  /** Cumulative counts behind the isolation ratios. */
  isolation: { finished: number; finishedWithViolations: number; failures: number; failuresAffectingOthers: number };
  /** The largest count any one user has right now: a maximum, never a label per user, so cardinality stays bounded. */
  userMaxima: { queuedRuns: number; activeRuns: number; activeContexts: number };
}

/** What a node is doing right now before anything ran: what the gauges show until start() names the sources. */
export const IDLE_CAPACITY: CapacitySnapshot = {
  cellsAlive: 0,
  quarantineCellsAlive: 0,
  workersAlive: 0,
  workersBusy: 0,
  activeRuns: 0,
  queuedRuns: 0,
  activeContexts: 0,
  liveAgentInstances: 0,
  dbConnections: [],
  redisConnections: [],
  cellMemory: [],
  cellGenerations: [],
  socketConnections: 0,
  socketOutboundBytes: 0,
  isolation: { finished: 0, finishedWithViolations: 0, failures: 0, failuresAffectingOthers: 0 },
  userMaxima: { queuedRuns: 0, activeRuns: 0, activeContexts: 0 },
};

export interface MetricsOptions {
  /** NODE_ID: the `node` label of every series this node exports, its cells' included. */
  nodeId: string;
  /** ALERT_ACTIVE_CONTEXTS, exported as a gauge so the alert rule compares against the configured value. */
  alertActiveContexts: number;
}

/**
 * Where the gauges read from, given to start(): the instruments exist first (everything that counts needs
 * them), the parts they read (run service, cells, sockets) are built with them.
 */
export interface MetricsSources {
  capacity: () => CapacitySnapshot;
  /** The default process metrics each live cell last reported; a dead cell is simply absent. */
  cellProcessMetrics: () => CellProcessMetrics[];
}

/**
 * Every label value each labelled counter is known to take, each series exported at 0 from start-up: a series
 * that first appears at 1 has no earlier sample, so increase() and rate() (the alert rules, the dashboard) never
 * see the first event. tests/alerts.test.ts checks that every counter they read is there at 0 on a fresh server.
 */
export const KNOWN_LABELS = {
  atoll_runs_refused_total: [{ code: 'OVERLOADED' }, { code: 'STORAGE_QUOTA_EXCEEDED' }],
  atoll_runs_finished_total: [
    { status: 'completed', code: 'none' },
    { status: 'cancelled', code: 'CANCELLED' },
    { status: 'timeout', code: 'TIMEOUT' },
    ...(['AGENT_ERROR', 'WORKER_CRASHED', 'OUT_OF_MEMORY', 'LIMIT_EXCEEDED', 'SINGLETON_AGENT', 'INTERNAL'] satisfies ErrorCode[]).map((code) => ({ status: 'failed' satisfies TerminalStatus, code })),
  ],
  atoll_cell_deaths_total: CELL_DEATH_CAUSES.map((cause) => ({ cause })),
  atoll_cell_killers_quarantined_total: (['culprit', 'suspect'] satisfies KillerEvidence[]).map((evidence) => ({ evidence })),
  // A bystander runs again because its cell died (the cause), or its node was lost or is draining.
  atoll_run_restarts_total: [...CELL_DEATH_CAUSES, 'node_lost', 'node_draining'].map((reason) => ({ reason })),
  atoll_runs_taken_over_total: ['rerun', 'failed', 'cancelled', 'requeued'].map((outcome) => ({ outcome })),
  atoll_leaked_resources_total: LEAK_KINDS.map((kind) => ({ kind })),
  atoll_worker_recycles_total: RECYCLE_REASONS.map((reason) => ({ reason })),
  atoll_thread_deaths_total: ['out_of_memory', 'exited'].map((cause) => ({ cause })),
  atoll_events_dropped_total: ['run_settled', 'not_logged', 'socket_backpressure'].map((reason) => ({ reason })),
  atoll_db_queries_refused_total: REFUSAL_REASONS.map((reason) => ({ reason })),
  atoll_walls_hit_total: ['signal', 'priority', 'worker', 'module_hooks', 'v8', 'fd', 'open_files', 'sqlite', 'egress', 'broadcast_channel', 'port', 'model'].map((wall) => ({ wall })),
} as const satisfies Record<string, readonly Record<string, string>[]>;

/** atoll_event_loop_lag_seconds samples the front's event loop this often; the alert is at 100 ms of lag. */
const LAG_RESOLUTION_MS = 50;

// Agent runs last seconds to minutes: the default buckets stop at 10 s.
const RUN_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600];

export function createMetrics(options: MetricsOptions) {
  let sources: MetricsSources = { capacity: () => IDLE_CAPACITY, cellProcessMetrics: () => [] };
  const snapshot = () => sources.capacity();
  const registry = new client.Registry();
  // prom-client adds default labels to every series of the registry (text and JSON alike), so no metric
  // has to name `node` itself; the cells' series get it where they are merged (metrics-merge.ts).
  const nodeLabels = { node: options.nodeId };
  registry.setDefaultLabels(nodeLabels);
  client.collectDefaultMetrics({ register: registry });
  // Sampled between start() and stop() (a timer of its own inside Node). Each sample is the time between two of its
  // ticks, so an idle loop reads as the resolution itself: the gauge reports what is over it. A monitor is a timer
  // that wakes the process, and waking an idle process is what costs (here: ~3.8 ms of CPU per second at 20 ms,
  // ~6.5 at prom-client's 10, kept for nodejs_eventloop_lag_* as every Node dashboard knows it).
  const lag = monitorEventLoopDelay({ resolution: LAG_RESOLUTION_MS });

  const m = {
    registry,
    runsAccepted: new client.Counter({ name: 'atoll_runs_accepted_total', help: 'Runs accepted (persisted and acknowledged).', registers: [registry] }),
    runsRefused: new client.Counter({ name: 'atoll_runs_refused_total', help: 'Run requests refused before acceptance, by error code.', labelNames: ['code'], registers: [registry] }),
    runsStarted: new client.Counter({ name: 'atoll_runs_started_total', help: 'Run attempts started by a worker thread.', registers: [registry] }),
    runsFinished: new client.Counter({ name: 'atoll_runs_finished_total', help: 'Runs finished, by terminal status and error code ("none" when completed).', labelNames: ['status', 'code'], registers: [registry] }),
    runDuration: new client.Histogram({ name: 'atoll_run_duration_seconds', help: 'Execution time of finished runs, from start in a worker to the terminal event.', buckets: RUN_BUCKETS, registers: [registry] }),
    queueWait: new client.Histogram({ name: 'atoll_run_queue_wait_seconds', help: 'Time from acceptance to start in a worker thread.', buckets: RUN_BUCKETS, registers: [registry] }),
    cellRejuvenations: new client.Counter({ name: 'atoll_cell_rejuvenations_total', help: 'Idle serving cells replaced because their memory grew past CELL_RECYCLE_RSS_RATIO times their warm baseline (not deaths).', registers: [registry] }),
    cellDeaths: new client.Counter({ name: 'atoll_cell_deaths_total', help: 'Cell processes that died, by cause.', labelNames: ['cause'], registers: [registry] }),
    cellRestartSeconds: new client.Histogram({ name: 'atoll_cell_restart_seconds', help: 'Time from a cell\'s death to its replacement being ready.', buckets: [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30], registers: [registry] }),
    runRestarts: new client.Counter({ name: 'atoll_run_restarts_total', help: 'Bystander runs started again after their cell died (not failures), by the cell\'s death cause.', labelNames: ['reason'], registers: [registry] }),
    runsTakenOver: new client.Counter({ name: 'atoll_runs_taken_over_total', help: 'Runs of a node whose lease expired, taken over by this node (several nodes), by outcome: rerun (run again, its log continuing with run_restarted), failed (not safe to repeat, or out of attempts: WORKER_CRASHED), cancelled (its stop was asked meanwhile), requeued (it had not started there).', labelNames: ['outcome'], registers: [registry] }),
    leasesLost: new client.Counter({ name: 'atoll_node_leases_lost_total', help: 'Times this node lost its lease (several nodes: it could not renew it in time, or found it expired) and abandoned its runs to the others (target 0).', registers: [registry] }),
    cellKillersQuarantined: new client.Counter({ name: 'atoll_cell_killers_quarantined_total', help: 'Users put in quarantine for killing cells (their runs then run alone in the cell killers\' quarantine cell for CELL_KILLER_QUARANTINE_MS; a user named again while in quarantine is not counted again), by evidence: culprit (a run of theirs named the culprit of a cell death) or suspect (their runs, and no other user\'s, were suspects of 3 cell deaths in a row that named no culprit).', labelNames: ['evidence'], registers: [registry] }),
    collateralRuns: new client.Counter({ name: 'atoll_collateral_runs_total', help: 'Runs that failed only because another run killed their cell (target 0).', registers: [registry] }),
    contamination: new client.Counter({ name: 'atoll_cross_request_contamination_total', help: 'Runs that found their worker not in its clean state when they started (target 0).', registers: [registry] }),
    singletonReuse: new client.Counter({ name: 'atoll_singleton_agent_reuse_total', help: 'Runs refused because the agent factory returned an instance that had already served a run.', registers: [registry] }),
    leakedResources: new client.Counter({ name: 'atoll_leaked_resources_total', help: 'Resources runs opened and did not close, by kind (timer, socket, file, process, other).', labelNames: ['kind'], registers: [registry] }),
    globalsLeft: new client.Counter({ name: 'atoll_globals_left_behind_total', help: 'Runs that added, removed or replaced globals or built-in prototype members.', registers: [registry] }),
    cpuDemoted: new client.Counter({ name: 'atoll_runs_cpu_demoted_total', help: 'Runs that kept a core busy past CPU_DEMOTE_AFTER_MS and were lowered in OS priority so other runs went first.', registers: [registry] }),
    workerRecycles: new client.Counter({ name: 'atoll_worker_recycles_total', help: 'Worker threads retired after a run instead of serving another, by reason.', labelNames: ['reason'], registers: [registry] }),
    workerDeaths: new client.Counter({ name: 'atoll_thread_deaths_total', help: 'Worker threads that died or were terminated inside a healthy cell, by cause.', labelNames: ['cause'], registers: [registry] }),
    cleanupDuration: new client.Histogram({ name: 'atoll_cleanup_duration_seconds', help: 'Time to clean up after a run (agent cleanup, context release, leak checks).', buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 2.5, 5, 10], registers: [registry] }),
    eventsRelayed: new client.Counter({ name: 'atoll_events_relayed_total', help: 'Run events persisted and sent to their user\'s room.', registers: [registry] }),
    eventsDropped: new client.Counter({
      name: 'atoll_events_dropped_total',
      help: 'Run events that did not reach the event log or a socket, by reason: run_settled (a cell sent it for a run the front had already settled; never logged nor sent), not_logged (the event log write failed; it was still sent live), socket_backpressure (a live event not sent to one stalled socket, which was told resync_required and replays it from the log).',
      labelNames: ['reason'],
      registers: [registry],
    }),
    dbQueriesRefused: new client.Counter({
      name: 'atoll_db_queries_refused_total',
      help: 'Database statements from worker threads that the front\'s gate refused (agent code went around ctx.db), by reason: invalid_message (malformed), run_not_running (its run is not running in that cell), statement_not_allowed (not one of the statements ctx.db compiles to), invalid_args (arguments of the wrong shape or out of bounds), user_mismatch (pinned to another user than the run\'s), too_many_waiting (over 256 of its run\'s statements waiting: they run one at a time, paced; a limit, not a wall, and AtollAgentProbingWalls leaves it out). Target 0.',
      labelNames: ['reason'],
      registers: [registry],
    }),
    wallsHit: new client.Counter({
      name: 'atoll_walls_hit_total',
      help: 'Runs whose code tried something a wall refused, by wall: signal (a signal to another process), priority (the priority of another thread or process), worker (a worker thread of its own), module_hooks (module.register or registerHooks), v8 (V8 flags, shared by the whole cell process), sqlite (node:sqlite, which the permission model does not check), fd (a file descriptor the thread did not open: the cell channel to the front, its log, its sockets), open_files (an open or a socket past RUN_OPEN_FILES: a limit, not an escape; AtollAgentProbingWalls leaves it out), egress (a connection to an address AGENT_EGRESS does not allow: loopback, private, link-local, unix sockets; or a listening socket, a unix socket, a bind to a chosen port, whatever AGENT_EGRESS says), broadcast_channel (a BroadcastChannel, which would reach every thread of the cell), port (a message to its cell on its port that the worker runtime never sends: the run fails and its worker is retired), model (a model request the broker refused). Refused database statements are counted in atoll_db_queries_refused_total. Each run counts once per wall. Target 0: a non-zero value is agent code probing its walls.',
      labelNames: ['wall'],
      registers: [registry],
    }),
    socketsStalled: new client.Counter({
      name: 'atoll_socket_stalled_disconnects_total',
      help: 'Sockets disconnected because they took none of the data sent to them for SOCKET_STALL_TIMEOUT_MS (their unsent data was discarded).',
      registers: [registry],
    }),
    timeToFirstEvent: new client.Histogram({
      name: 'atoll_run_time_to_first_event_seconds',
      help: 'Time from acceptance to the front receiving the first event the agent emits (agent_thinking, tool_executing, tool_completed or partial_result); once per run, runs whose agent emits nothing are not observed.',
      buckets: RUN_BUCKETS,
      registers: [registry],
    }),
  };

  // Born at 0 (KNOWN_LABELS says why).
  for (const metric of Object.values(m)) {
    if (!(metric instanceof client.Counter)) continue;
    const known: readonly Record<string, string>[] | undefined = (KNOWN_LABELS as Record<string, readonly Record<string, string>[]>)[(metric as unknown as { name: string }).name];
    for (const labels of known ?? []) metric.inc(labels, 0);
  }

  const gauge = (name: string, help: string, read: (s: CapacitySnapshot) => number) =>
    new client.Gauge({
      name,
      help,
      registers: [registry],
      collect() {
        this.set(read(snapshot()));
      },
    });
  gauge('atoll_runs_active', 'Runs dispatched to a cell and not finished.', (s) => s.activeRuns);
  gauge('atoll_runs_queued', 'Accepted runs waiting for a worker thread.', (s) => s.queuedRuns);
  gauge('atoll_cells_alive', 'Serving cells that are ready (the quarantine cell is not counted).', (s) => s.cellsAlive);
  gauge('atoll_quarantine_cells_alive', 'Quarantine cells that are ready (started on first need).', (s) => s.quarantineCellsAlive);
  gauge('atoll_threads_alive', 'Worker threads alive across ready cells.', (s) => s.workersAlive);
  gauge('atoll_threads_busy', 'Worker threads executing a run.', (s) => s.workersBusy);
  gauge('atoll_threads_idle', 'Worker threads alive and not executing a run.', (s) => Math.max(0, s.workersAlive - s.workersBusy));
  gauge('atoll_pool_utilization_ratio', 'Busy workers / alive workers across ready cells (0 when none is alive; capped at 1 while burst workers start).', (s) =>
    s.workersAlive === 0 ? 0 : Math.min(1, s.workersBusy / s.workersAlive),
  );
  gauge('atoll_user_runs_queued_max', 'Accepted runs waiting for a worker, of the one user with the most of them.', (s) => s.userMaxima.queuedRuns);
  gauge('atoll_user_runs_active_max', 'Runs dispatched or running of the one user with the most of them.', (s) => s.userMaxima.activeRuns);
  gauge('atoll_user_execution_contexts_active_max', 'Execution contexts alive (runs a worker has started and not finished) of the one user with the most of them.', (s) => s.userMaxima.activeContexts);
  gauge('atoll_alert_active_contexts_threshold', 'ALERT_ACTIVE_CONTEXTS: above this many active contexts for one user, the AtollUserActiveContextsHigh alert fires.', () => options.alertActiveContexts);
  gauge('atoll_execution_contexts_active', 'Execution contexts built and not yet released, across cells.', (s) => s.activeContexts);
  gauge('atoll_agent_instances_live', 'Agent instances created and not yet released, across cells.', (s) => s.liveAgentInstances);
  gauge('atoll_request_isolation_score', 'Share of finished runs with zero isolation violations (1 when none finished).', (s) =>
    s.isolation.finished === 0 ? 1 : 1 - s.isolation.finishedWithViolations / s.isolation.finished,
  );
  gauge('atoll_failure_containment_rate', 'Share of failed runs whose failure affected no other run (1 when none failed).', (s) =>
    s.isolation.failures === 0 ? 1 : 1 - s.isolation.failuresAffectingOthers / s.isolation.failures,
  );
  gauge('atoll_socket_connections', 'Connected socket.io sockets (one per engine.io connection).', (s) => s.socketConnections);
  gauge('atoll_socket_outbound_bytes', 'Bytes the front has sent to its sockets that they have not taken yet, all sockets together: the memory slow clients cost (each socket is held to SOCKET_MAX_BUFFERED_BYTES plus about one message).', (s) => s.socketOutboundBytes);
  new client.Gauge({
    name: 'atoll_db_connections',
    help: 'Database clients, by process: the front (its connections: on SQLite two, reads (which also run the worker threads\' statements its gate allows) and writes; on PostgreSQL DB_POOL_SIZE for reads and the gate plus one for writes), or a cell slot (`cell1`, `quarantine1`: one Prisma client per worker thread that has loaded it, at its first ctx.db query unless WORKER_DB_WARMUP=eager; it opens no connection: its statements go to the front).',
    labelNames: ['process'],
    registers: [registry],
    collect() {
      this.reset();
      for (const d of snapshot().dbConnections) this.set({ process: d.process }, d.count);
    },
  });
  new client.Gauge({
    name: 'atoll_redis_connected',
    help: 'Several nodes (REDIS_URL): 1 while this node\'s Redis connection is up, 0 while it reconnects, by connection (command: commands and PUBLISH; subscriber: the events of other nodes). No series on a single node. While the command connection is down, new sockets and tickets are refused (REDIS_UNAVAILABLE) and rate limits count per node.',
    labelNames: ['connection'],
    registers: [registry],
    collect() {
      this.reset();
      for (const r of snapshot().redisConnections) this.set({ connection: r.connection }, r.up ? 1 : 0);
    },
  });
  new client.Gauge({
    name: 'atoll_cell_memory_bytes',
    help: 'Memory of each cell process, by cell slot (cell1, quarantine1: the same for every generation) and kind (heap, rss, external = off-heap buffers).',
    labelNames: ['cell', 'kind'],
    registers: [registry],
    collect() {
      this.reset();
      for (const c of snapshot().cellMemory) this.set({ cell: c.cell, kind: c.kind }, c.bytes);
    },
  });
  new client.Gauge({
    name: 'atoll_cell_generation',
    help: 'The generation of the cell now in each slot (1 for its first cell, one more for each replacement): the `cell1-g7` that logs and ran_on name. One series per slot, replaced in place, so cell deaths add no series.',
    labelNames: ['cell'],
    registers: [registry],
    collect() {
      this.reset();
      for (const c of snapshot().cellGenerations) this.set({ cell: c.cell }, c.generation);
    },
  });
  new client.Gauge({
    name: 'atoll_event_loop_lag_seconds',
    help: 'p99 event-loop delay of the front over the last scrape interval, beyond its 50 ms sampling interval.',
    registers: [registry],
    collect() {
      this.set(Math.max(0, lag.percentile(99) / 1e9 - LAG_RESOLUTION_MS / 1000));
      lag.reset();
    },
  });

  return {
    ...m,
    /** The exposition of one scrape: the front's registry plus every live cell's process metrics. */
    render: () => renderWithCells(registry, sources.cellProcessMetrics(), nodeLabels),
    /** Reads the gauges from `from` and starts measuring the front's event-loop delay (atoll_event_loop_lag_seconds). */
    start(from: MetricsSources): void {
      sources = from;
      lag.enable();
    },
    stop: () => void lag.disable(),
  };
}

export type Metrics = ReturnType<typeof createMetrics>;
