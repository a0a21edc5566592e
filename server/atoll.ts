/**
 * The front's composition root: database, cells, run service, HTTP and socket.io, wired once. The only
 * place that holds the process's mutable state; everything below it receives its dependencies.
 */
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { createTokenService, developmentSecret } from './auth/tokens.js';
import { launchCells, type LaunchedCells } from './cells/launch-cells.js';
import { createCpuGovernor } from './cells/cpu-governor.js';
import type { CellHandle } from './cells/cell-handle.js';
import { createNamelessFilesWatch } from './cells/nameless-files.js';
import type { Config } from './config.js';
import { cpuGovernorSettingsOf, httpSettingsOf, runServiceSettingsOf, socketSettingsOf, storeOptionsOf } from './config-views.js';
import { createHttpApp } from './http/app.js';
import { createHttpServer } from './http/server-limits.js';
import type { Logger } from './logger.js';
import { createMetrics } from './metrics.js';
import { userMaxima } from './runs/user-stats.js';
import { createSocketServer } from './realtime/socket-server.js';
import { createInProcessEventBus } from './bus/in-process/in-process-bus.js';
import { createInProcessSharedState } from './shared/in-process/index.js';
import { createEventRelay } from './runs/event-relay.js';
import { createInProcessNodeMessages } from './bus/in-process/node-messages.js';
import { signalsOver } from './cluster/signals.js';
import { createRunService } from './runs/run-service.js';
import { startTracing } from './tracing/start-tracing.js';
import { localStateDir } from './store/database-target.js';
import { openStore } from './store/open-store.js';
import { createWorkerQueryGate, learnStatements } from './store/worker-query-gate.js';
import { messageOf } from '../protocol/errors.js';

const ROOT = path.resolve(__dirname, '../..');
/** At shutdown, how long the sockets get to write the shutdown notice before they are closed. */
const SHUTDOWN_NOTICE_MS = 1000;

/** The database migrated, the workers' statements being learned, this node's connection open and locked. */
async function openDatabase(config: Config, log: Logger, dbProvider: LaunchedCells['dbProvider']) {
  const backend = openStore(config.database, storeOptionsOf(config, log));
  if (backend.provider !== dbProvider) throw new Error(`the cells were launched for ${dbProvider}, the store is ${backend.provider}`);
  const migrations = await backend.migrate();
  if (migrations.applied.length) log.info({ applied: migrations.applied }, 'database migrated');
  if (migrations.checksumMismatches.length) log.warn({ migrations: migrations.checksumMismatches }, 'applied migrations were edited since');

  // What workers may have executed; a scoped query that is not pinned to its user stops the start.
  // Learning loads Prisma's query compiler (~0.5-2 s of CPU): done while the cells start (awaited in startAtoll).
  const learning = learnStatements(backend);
  learning.catch(() => undefined);
  const database = await backend.connect();
  // One node per database unless they are a cluster (server/store/node-lock.ts); says why when it refuses.
  try {
    await database.lockNode(config.cluster ? 'cluster' : 'single');
  } catch (err) {
    await database.close();
    throw err;
  }
  return { backend, learning, database };
}

/**
 * `launching`: the cells, already starting (server/main.ts launches them before it loads this module); by
 * default launched here.
 */
export async function startAtoll(config: Config, log: Logger, launching: Promise<LaunchedCells> = launchCells(config, log, ROOT)) {
  const { cells, dbProvider } = await launching;
  // A front that cannot open its database stops the cells launched for it.
  const { learning, database } = await openDatabase(config, log, dbProvider).catch(async (err: unknown) => {
    await cells.stop(2000);
    throw err;
  });
  const store = database.store;
  const tokens = createTokenService(config.jwtSecret ?? developmentSecret(localStateDir(config.database)), { maxLifetimeS: config.maxTokenLifetimeS });
  const httpServer = createHttpServer();

  // Built first, started last: the instruments exist before what counts with them, the gauges read
  // from the parts once they all exist (metrics.start below).
  const metrics = createMetrics({ alertActiveContexts: config.alertActiveContexts, nodeId: config.nodeId });

  // Statements forwarded before learning is done wait for it (server/store/worker-query-gate.ts).
  const workerQueries = createWorkerQueryGate({
    statements: learning,
    connection: database.gateConnection,
    isUnavailable: database.isUnavailable,
    onRefused: (reason) => metrics.dbQueriesRefused.inc({ reason }),
    messagesFitting: (...page) => store.messagesFitting(...page),
    log,
  });

  // One node: the bus, the shared state and the node messages in memory. Several nodes (REDIS_URL): over Redis,
  // on the node's two connections (server/redis-cluster.ts).
  // Required only then: a single node loads no Redis client.
  const redis = config.cluster
    ? (require('./redis-cluster.js') as typeof import('./redis-cluster.js')).createRedisCluster({ url: config.cluster.redisUrl, keyPrefix: config.cluster.keyPrefix, nodeId: config.nodeId, startupWaitMs: config.dbStartupWaitMs, config, log })
    : null;
  // The event bus: the relay publishes committed events, the socket server (started below) delivers them.
  const bus = redis?.bus ?? createInProcessEventBus();
  // Tickets, rate limits, connection counts, idempotency: created here, started before the cells below.
  const shared = redis?.shared ?? createInProcessSharedState(config);
  const nodeMessages = redis?.nodeMessages ?? createInProcessNodeMessages(config.nodeId, log);
  // A dead node may have committed events it never published: every socket here replays what it follows.
  const signals = signalsOver(nodeMessages, { onNodeDied: () => redis?.bus.gap() });
  // Tracing on (OTEL_EXPORTER_OTLP_ENDPOINT): the OpenTelemetry SDK is loaded now, and only then.
  const tracing = config.tracing ? await startTracing(config.tracing, config.nodeId, log) : null;
  const relay = createEventRelay({ store, bus, metrics, log, onFenced: (run) => runs.fenced(run) });
  const runs = createRunService({
    store,
    relay,
    cells,
    metrics,
    log,
    workerQueries,
    accepting: shared.accepting,
    settings: runServiceSettingsOf(config),
    cluster: config.cluster && database.cluster ? { store: database.cluster, signals, bus, nodeId: config.nodeId, nodeLeaseMs: config.nodeLeaseMs } : null,
    tracer: tracing?.tracer,
  });

  const governor = createCpuGovernor({
    settings: cpuGovernorSettingsOf(config),
    cells: () =>
      cells.cells().flatMap((c) =>
        c.state === 'ready' && c.child.pid !== undefined && c.systemOsThreads ? [{ id: c.id, pid: c.child.pid, runStarts: c.runs.values(), systemOsThreads: c.systemOsThreads, demote: (tid: number) => c.send({ type: 'demote_os_thread', tid }) }] : [],
      ),
  });
  governor.start();
  const maxDescriptors = config.cellMaxDescriptors > 0 ? config.cellMaxDescriptors : null;
  const overDescriptors = (c: CellHandle) => (held: number) => {
    if (c.killForDescriptors(held, maxDescriptors!)) log.warn({ cell: c.id, descriptors: held, ceiling: maxDescriptors }, 'cell holds more descriptors than CELL_MAX_DESCRIPTORS: stopped it');
  };
  const nameless = createNamelessFilesWatch({
    cells: () =>
      cells.cells().flatMap((c) =>
        c.state === 'ready' && c.child.pid !== undefined ? [{ pid: c.child.pid, scratchDir: c.scratch.dir, busy: c.runs.size > 0, send: c.send.bind(c), maxDescriptors, overDescriptors: overDescriptors(c) }] : [],
      ),
    // Only disk counts nameless files: with RUN_SCRATCH_MB at 0 only the number of descriptors is read.
    readNameless: config.limits.scratchBytes > 0,
  });
  if (config.limits.scratchBytes > 0 || maxDescriptors !== null) nameless.start();

  runs.open();
  const recovered = await runs.recover();
  if (recovered.failed || recovered.requeued) log.warn(recovered, 'recovered runs left by a previous process');

  try {
    // First what may refuse to start (Redis unreachable for DB_STARTUP_WAIT_MS), then the cells.
    await bus.start();
    await shared.start();
    await nodeMessages.start();
    await cells.start({
      onMessage: (cell, msg) => runs.onCellMessage(cell, msg),
      onCellExit: (cell, exit, runIds) => runs.onCellExit(cell, exit, runIds),
      onCellReady: (cell, restartMs) => runs.onCellReady(cell, restartMs),
      onCellRejuvenated: () => metrics.cellRejuvenations.inc(),
    });
    await learning;
  } catch (err) {
    runs.close();
    governor.stop();
    nameless.stop();
    await cells.stop(2000);
    await nodeMessages.stop().catch(() => undefined);
    await shared.stop().catch(() => undefined);
    await bus.stop().catch(() => undefined);
    await redis?.stop();
    await database.close();
    await tracing?.stop().catch(() => undefined);
    throw err;
  }

  // Several nodes: the lease, the sweeper and claiming start once events can be published.
  await runs.join();
  const web = { dir: path.join(ROOT, 'web/dist'), llmConfigured: Boolean(config.agentSettings.llm.baseUrl && config.agentSettings.llm.model) };
  const app = createHttpApp({ store, runs, cells, tokens, metrics, log, settings: httpSettingsOf(config), tickets: shared.tickets, limits: shared.limits, web, pingRedis: redis ? () => redis.connections.ping() : undefined });
  httpServer.on('request', app);
  const sockets = createSocketServer({
    http: httpServer,
    tokens,
    bus,
    shared,
    runs,
    store,
    log,
    settings: socketSettingsOf(config),
    onStalledDisconnect: () => metrics.socketsStalled.inc(),
    onEventsDropped: (n) => metrics.eventsDropped.inc({ reason: 'socket_backpressure' }, n),
  });
  sockets.start();
  const live = () => cells.cells().filter((c) => c.state !== 'dead');
  metrics.start({
    capacity: () => {
      const ready = cells.cells().filter((c) => c.state === 'ready');
      const sum = (pick: (s: NonNullable<(typeof ready)[number]['stats']>) => number) => ready.reduce((n, c) => n + (c.stats ? pick(c.stats) : 0), 0);
      return {
        ...runs.snapshot(),
        cellsAlive: ready.filter((c) => !c.quarantine).length,
        quarantineCellsAlive: ready.filter((c) => c.quarantine).length,
        workersAlive: sum((s) => s.workersAlive),
        workersBusy: ready.reduce((n, c) => n + c.runs.size, 0),
        activeContexts: sum((s) => s.activeContexts),
        liveAgentInstances: sum((s) => s.liveAgentInstances),
        // The front: its store's connections (server/store/backend.ts). A cell: its workers' Prisma clients (no
        // connection each). Cells are labelled by slot (cell-handle.ts says why).
        dbConnections: [{ process: 'front', count: database.connections }, ...ready.map((c) => ({ process: c.slotName, count: c.stats?.dbClients ?? 0 }))],
        cellMemory: ready.flatMap((c) =>
          c.stats
            ? [
                { cell: c.slotName, kind: 'heap' as const, bytes: c.stats.heapUsedBytes },
                { cell: c.slotName, kind: 'rss' as const, bytes: c.stats.rssBytes },
                { cell: c.slotName, kind: 'external' as const, bytes: c.stats.externalBytes },
              ]
            : [],
        ),
        cellGenerations: live().map((c) => ({ cell: c.slotName, generation: c.generation })),
        socketConnections: sockets.connections(),
        redisConnections: redis?.connections.connected() ?? [],
        socketOutboundBytes: sockets.outboundBytes(),
        userMaxima: userMaxima(runs.liveRuns()),
      };
    },
    // Only live cells: a dead cell's process series leave the scrape with it, until its replacement reports.
    cellProcessMetrics: () => live().map((c) => ({ cell: c.slotName, metrics: c.processMetrics })),
  });

  await new Promise<void>((resolve, reject) => {
    httpServer.once('error', reject);
    httpServer.listen(config.port, config.host, () => resolve());
  });
  const port = (httpServer.address() as AddressInfo).port;
  runs.pump();

  let stopping: Promise<void> | null = null;
  return {
    port,
    /** Graceful stop: drain runs, tell clients, close sockets, cells and the database. */
    stop(): Promise<void> {
      stopping ??= (async () => {
        log.info({ grace_ms: config.shutdownGraceMs }, 'shutting down');
        await runs.drain(config.shutdownGraceMs);
        // What a client sent before the close is answered (a stop_agent sent as its run moved off this node, its
        // answer a database round trip away), not cut off, a bounded moment (a client that keeps sending does
        // not hold the stop).
        const answerBy = Date.now() + SHUTDOWN_NOTICE_MS;
        while (sockets.unanswered() > 0 && Date.now() < answerBy) await new Promise((r) => setTimeout(r, 10));
        sockets.io.emit('server_shutdown', { reason: 'the server is shutting down' });
        // Closing discards what engine.io has not written yet: let the notice (and the last runs' terminal
        // events queued before it) go out first, a bounded moment (a stalled client does not hold the stop).
        const noticeBy = Date.now() + SHUTDOWN_NOTICE_MS;
        while (sockets.outboundBytes() > 0 && Date.now() < noticeBy) await new Promise((r) => setTimeout(r, 10));
        await new Promise<void>((resolve) => sockets.io.close(() => resolve()));
        sockets.stop();
        await nodeMessages.stop();
        await bus.stop();
        await shared.stop();
        await redis?.stop();
        governor.stop();
        nameless.stop();
        await cells.stop(5000);
        metrics.stop();
        await database.close();
        runs.close();
        // The last runs' spans go out before the process exits.
        await tracing?.stop().catch((err: unknown) => log.warn({ err: messageOf(err) }, 'exporting the last spans failed'));
        log.info('stopped');
      })();
      return stopping;
    },
  };
}
