/** The express app: auth, the /v1 API, health and metrics, coded errors. Built from its dependencies. */
import cors from 'cors';
import express from 'express';
import type { TokenService } from '../auth/tokens.js';
import type { CellSupervisor } from '../cells/supervisor.js';
import type { HttpSettings } from '../config-views.js';
import type { Logger } from '../logger.js';
import type { Metrics } from '../metrics.js';
import { CodedError } from '../../protocol/errors.js';
import { DevLoginBody, messageCap, parse } from '../../protocol/requests.js';
import type { AgentList, DevLoginReply, TicketReply } from '../../protocol/views.js';
import type { RunService } from '../runs/run-service.js';
import type { RunStore } from '../store/store.js';
import { requireUser, sessionOf, userOf } from './auth.js';
import type { RateLimiter, Tickets } from '../shared/shared-state.js';
import { budgetAddress, trustFunction } from './client-address.js';
import { errorHandler, notFoundHandler } from './errors.js';
import { metricsAccess, operatorCheck } from './metrics-access.js';
import { devLoginHostAllowed, originAllowed } from './origin.js';
import { stalledAnswerTimeout } from './server-limits.js';
import { metaRoutes } from './routes/meta.js';
import { opsRoutes } from './routes/ops.js';
import { replayRoutes } from './routes/replay.js';
import { runRoutes } from './routes/runs.js';
import { webRoutes } from './routes/web.js';

export interface HttpDeps {
  store: RunStore;
  runs: RunService;
  cells: CellSupervisor;
  tokens: TokenService;
  metrics: Metrics;
  log: Logger;
  /** devLogin (AUTH_DEV_LOGIN), maxInputBytes (MAX_INPUT_BYTES), corsOrigins (CORS_ORIGINS: browser origins allowed besides the server's own), trustProxy (TRUST_PROXY), ipv6BudgetPrefix (IPV6_BUDGET_PREFIX), httpStallTimeoutMs (HTTP_STALL_TIMEOUT_MS), metricsToken (METRICS_TOKEN). */
  settings: HttpSettings;
  tickets: Tickets;
  /** Shared with the socket server: one budget per user and per IP across HTTP and socket messages. */
  limits: { user: RateLimiter; ip: RateLimiter };
  /** The chat page: where its built files are, and whether a model is connected (the page says how to). */
  web: { dir: string; llmConfigured: boolean };
  /** Several nodes (REDIS_URL): Redis answers or says why not (reported by /readyz). */
  pingRedis?: () => Promise<void>;
}

export function createHttpApp(deps: HttpDeps): express.Express {
  const app = express();
  app.disable('x-powered-by');
  app.set('query parser', 'simple');
  // req.ip: the client's address behind trusted proxies (TRUST_PROXY), by the rule the socket handshake uses too.
  app.set('trust proxy', trustFunction(deps.settings.trustProxy));
  app.use(stalledAnswerTimeout(deps.settings.httpStallTimeoutMs, deps.log));
  app.use((_req, res, next) => {
    // API answers are per user and per moment: never cached, never sniffed (the chat pages set their own).
    res.setHeader('X-Content-Type-Options', 'nosniff');
    res.setHeader('Cache-Control', 'no-store');
    next();
  });
  // A page of another origin may neither read answers (no CORS headers for it) nor cause effects (refused).
  app.use((req, _res, next) => {
    if (originAllowed(req.headers.origin, req.headers.host, deps.settings.corsOrigins)) return next();
    next(new CodedError('FORBIDDEN', `origin ${JSON.stringify(String(req.headers.origin).slice(0, 200))} is not allowed (CORS_ORIGINS)`));
  });
  app.use(cors({ origin: [...deps.settings.corsOrigins], allowedHeaders: ['authorization', 'content-type', 'idempotency-key'], exposedHeaders: ['retry-after', 'idempotent-replayed'], maxAge: 600 }));
  // Per-IP budget first, before a body is even parsed; health and metrics stay free for probes.
  app.use('/v1', async (req, _res, next) => {
    await deps.limits.ip.take(`ip:${budgetAddress(req.ip ?? 'unknown', deps.settings.ipv6BudgetPrefix)}`, 'requests from this address');
    next();
  });
  // Bodies are parsed only for whom they are meant: the dev login's, and a signed-in user's within their budget.
  // Parsed for everyone, a client without a token made the front parse 119 KB of 10,000 values (~12 ms) for a 401,
  // 50 a second per address (helper-86).
  const jsonBody = express.json({ limit: messageCap(deps.settings.maxInputBytes) });

  app.get('/healthz', (_req, res) => {
    res.json({ status: 'ok', draining: deps.runs.draining, cells_ready: deps.cells.cells().filter((c) => c.state === 'ready').length });
  });

  app.use(opsRoutes({ operator: operatorCheck(deps.settings.metricsToken), ping: () => deps.store.ping(), cells: () => deps.cells.cells(), draining: () => deps.runs.draining, pingRedis: deps.pingRedis }));

  app.get('/metrics', metricsAccess(deps.settings.metricsToken), async (req, res, next) => {
    try {
      // Diagnostics for memory soaks: only when the operator started node with --expose-gc, collect garbage
      // first, so the scrape shows what is retained rather than what is merely not yet collected.
      const gc = (globalThis as { gc?: () => void }).gc;
      if (req.query.gc === '1' && typeof gc === 'function') gc();
      res.type(deps.metrics.registry.contentType).send(await deps.metrics.render());
    } catch (err) {
      next(err);
    }
  });

  const devLoginAllowed: express.RequestHandler = (req, _res, next) => {
    if (!deps.settings.devLogin) throw new CodedError('FORBIDDEN', 'dev login is disabled (AUTH_DEV_LOGIN is not set)');
    if (!devLoginHostAllowed(req.headers.host, deps.settings.corsOrigins)) {
      throw new CodedError('FORBIDDEN', 'dev login answers only requests addressed to localhost, an IP address or a CORS_ORIGINS host (any site can point its name at this server)');
    }
    next();
  };
  app.post('/v1/auth/dev-login', devLoginAllowed, jsonBody, (req, res) => {
    const body = parse(DevLoginBody, req.body ?? {}, 'body');
    res.json({ token: deps.tokens.issue(body.user_id), user_id: body.user_id } satisfies DevLoginReply);
  });

  app.use(metaRoutes({ devLogin: deps.settings.devLogin, llmConfigured: deps.web.llmConfigured, maxInputBytes: deps.settings.maxInputBytes }));

  const v1 = express.Router();
  v1.use(requireUser(deps.tokens));
  v1.use(async (_req, res, next) => {
    await deps.limits.user.take(`user:${userOf(res)}`, 'requests for this user');
    next();
  });
  v1.use(jsonBody);
  v1.post('/auth/ticket', async (_req, res) => {
    res.status(201).json((await deps.tickets.issue(sessionOf(res))) satisfies TicketReply);
  });
  v1.get('/agents', (_req, res) => {
    res.json({ agents: deps.cells.agents() } satisfies AgentList);
  });
  v1.use(runRoutes({ store: deps.store, runs: deps.runs, settings: deps.settings }));
  v1.use(replayRoutes({ store: deps.store, runs: deps.runs }));
  app.use('/v1', v1);
  app.use(webRoutes({ dir: deps.web.dir }));

  app.use(notFoundHandler());
  app.use(errorHandler(deps.log));
  return app;
}
