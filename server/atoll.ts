/**
 * The front's composition root: database, cells, run service, HTTP and socket.io, wired once. The only
 * place that holds the process's mutable state; everything below it receives its dependencies.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { createPrismaClient } from '../prisma/create-client.js';
import { createTokenService, developmentSecret } from './auth/tokens.js';
import { createCellSupervisor, type CellSupervisor } from './cells/supervisor.js';
import type { Config } from './config.js';
import { createHttpApp } from './http/app.js';
import type { Logger } from './logger.js';
import { createMetrics } from './metrics.js';
import { userMaxima } from './runs/user-stats.js';
import { createSocketServer } from './realtime/socket-server.js';
import { createRateLimiter } from './realtime/rate-limiter.js';
import { createTicketStore } from './auth/tickets.js';
import { createEventRelay, type Broadcast } from './runs/event-relay.js';
import { createRunService, type RunService } from './runs/run-service.js';
import { applyMigrations } from './store/migrations.js';
import { createRunStore } from './store/run-store.js';
import { createRunWrites } from './store/run-writes.js';

const ROOT = path.resolve(__dirname, '../..');

export async function startAtoll(config: Config, log: Logger) {
  const migrations = applyMigrations(config.databaseFile, path.join(ROOT, 'prisma/migrations'));
  if (migrations.applied.length) log.info({ applied: migrations.applied }, 'database migrated');
  if (migrations.checksumMismatches.length) log.warn({ migrations: migrations.checksumMismatches }, 'applied migrations were edited since');

  const prisma = createPrismaClient(config.databaseFile);
  const writes = createRunWrites(config.databaseFile, { busyTimeoutMs: 10_000, synchronous: config.dbSynchronous });
  const store = createRunStore(prisma, writes);
  const tokens = createTokenService(config.jwtSecret ?? developmentSecret(config.databaseFile));
  const httpServer = http.createServer();

  // Late-bound: the supervisor reports to the run service, which dispatches through the supervisor.
  let runs: RunService;
  let socketConnections = () => 0;
  const cells: CellSupervisor = createCellSupervisor({
    cells: config.cells,
    quarantineCells: config.quarantineCells,
    recycleRssRatio: config.cellRecycleRssRatio,
    cellEntry: path.join(ROOT, 'dist/workers/cell/main.js'),
    log,
    cellConfig: {
      threads: config.threadsPerCell,
      databaseUrl: config.databaseUrl,
      agentsDir: config.agentsDir,
      enableChaosAgents: config.enableChaosAgents,
      runTimeoutMs: config.runTimeoutMs,
      runMemoryMb: config.runMemoryMb,
      cellMemoryMb: config.cellMemoryMb,
      maxRunsPerWorker: config.maxRunsPerWorker,
      workerDbWarmup: config.workerDbWarmup,
      threadLockdown: config.threadLockdown,
      threadReuse: config.threadReuse,
      cpuDemoteAfterMs: config.cpuDemoteAfterMs,
      warmSpareThreads: config.warmSpareThreads,
      quarantine: false,
      cancelGraceMs: config.cancelGraceMs,
      limits: config.limits,
      logLevel: config.logLevel,
      agentSettings: config.agentSettings,
    },
    events: {
      onMessage: (cell, msg) => runs.onCellMessage(cell, msg),
      onCellExit: (cell, exit, runIds) => runs.onCellExit(cell, exit, runIds),
      onCellReady: (cell, restartMs) => runs.onCellReady(cell, restartMs),
      onCellRejuvenated: () => metrics.cellRejuvenations.inc(),
    },
  });

  const metrics = createMetrics(() => {
    const ready = cells.cells().filter((c) => c.state === 'ready');
    const sum = (pick: (s: NonNullable<(typeof ready)[number]['stats']>) => number) => ready.reduce((n, c) => n + (c.stats ? pick(c.stats) : 0), 0);
    return {
      ...runs.snapshot(),
      cellsAlive: ready.filter((c) => !c.quarantine).length,
      quarantineCellsAlive: ready.filter((c) => c.quarantine).length,
      threadsAlive: sum((s) => s.threadsAlive),
      threadsBusy: ready.reduce((n, c) => n + c.runs.size, 0),
      activeContexts: sum((s) => s.activeContexts),
      liveAgentInstances: sum((s) => s.liveAgentInstances),
      // The front: Prisma's connection (reads) and the write connection (server/store/run-writes.ts).
      dbConnections: [{ process: 'front', count: 2 }, ...ready.map((c) => ({ process: c.id, count: c.stats?.dbClients ?? 0 }))],
      cellMemory: ready.flatMap((c) =>
        c.stats
          ? [
              { cell: c.id, kind: 'heap' as const, bytes: c.stats.heapUsedBytes },
              { cell: c.id, kind: 'rss' as const, bytes: c.stats.rssBytes },
              { cell: c.id, kind: 'external' as const, bytes: c.stats.externalBytes },
            ]
          : [],
      ),
      socketConnections: socketConnections(),
      userMaxima: userMaxima(runs.liveRuns()),
    };
  }, {
    alertActiveContexts: config.alertActiveContexts,
    // Only live cells: a dead cell's process series leave the scrape with it.
    cellProcessMetrics: () => cells.cells().filter((c) => c.state !== 'dead').map((c) => ({ cell: c.id, metrics: c.processMetrics })),
  });

  let broadcast: Broadcast = () => undefined;
  const relay = createEventRelay({ store, broadcast: (u, e) => broadcast(u, e), metrics, log });
  runs = createRunService({
    store,
    relay,
    cells: () => cells,
    metrics,
    log,
    config: { maxQueuedRuns: config.maxQueuedRuns, userMaxConcurrentRuns: config.userMaxConcurrentRuns, userMaxQueuedRuns: config.userMaxQueuedRuns, maxRunAttempts: config.maxRunAttempts, runTimeoutMs: config.runTimeoutMs, cancelGraceMs: config.cancelGraceMs },
  });

  const recovered = await runs.recover();
  if (recovered.failed || recovered.requeued) log.warn(recovered, 'recovered runs left by a previous process');

  try {
    await cells.start();
  } catch (err) {
    await cells.stop(2000);
    writes.close();
    await prisma.$disconnect();
    throw err;
  }

  const tickets = createTicketStore();
  const limits = { user: createRateLimiter(config.rateLimits.user), ip: createRateLimiter(config.rateLimits.ip) };
  const web = { dir: path.join(ROOT, 'web/dist'), llmConfigured: Boolean(config.agentSettings.llm.baseUrl && config.agentSettings.llm.model) };
  const app = createHttpApp({ store, runs, cells, tokens, metrics, log, devLogin: config.devLogin, maxInputBytes: config.maxInputBytes, tickets, limits, web });
  httpServer.on('request', app);
  const sockets = createSocketServer({
    http: httpServer,
    tokens,
    tickets,
    runs,
    store,
    log,
    limits,
    maxInputBytes: config.maxInputBytes,
    maxConnectionsPerUser: config.maxConnectionsPerUser,
    maxConnectionsPerIp: config.maxConnectionsPerIp,
    maxBufferedPackets: config.socketMaxBufferedPackets,
    tokenExpiryWarningMs: config.tokenExpiryWarningMs,
    onEventsDropped: (n) => metrics.eventsDropped.inc({ reason: 'socket_backpressure' }, n),
  });
  broadcast = (_userId, envelope) => sockets.deliver(envelope);
  socketConnections = sockets.connections;

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
        sockets.io.emit('server_shutdown', { reason: 'the server is shutting down' });
        await new Promise<void>((resolve) => sockets.io.close(() => resolve()));
        await cells.stop(5000);
        metrics.stop();
        writes.close();
        await prisma.$disconnect();
        log.info('stopped');
      })();
      return stopping;
    },
  };
}
