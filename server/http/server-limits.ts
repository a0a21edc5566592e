/**
 * How long the front's HTTP server waits for a client: to send its request, and to read its answer. Without
 * these a client that never reads keeps its answer in the front's memory for as long as it keeps the
 * connection open (Node sets no such limit by default).
 */
import http from 'node:http';
import type { RequestHandler } from 'express';
import type { Logger } from '../logger.js';

/** A request's headers must have arrived this long after it began (Node's default: 60 s). */
export const HEADERS_TIMEOUT_MS = 20_000;
/** The whole request, its body included (at most ~130 KB), within this (Node's default: 300 s). */
export const REQUEST_TIMEOUT_MS = 60_000;
/** How often Node checks the two above (its default, 30 s, would let a silent connection live for 50 s). */
const CONNECTIONS_CHECKING_INTERVAL_MS = 5_000;

/** The front's HTTP server (express and socket.io both answer on it). */
export function createHttpServer(): http.Server {
  return http.createServer({ headersTimeout: HEADERS_TIMEOUT_MS, requestTimeout: REQUEST_TIMEOUT_MS, connectionsCheckingInterval: CONNECTIONS_CHECKING_INTERVAL_MS });
}

/**
 * An express request whose connection makes no progress for `stallMs` (HTTP_STALL_TIMEOUT_MS) has it destroyed,
 * freeing the answer it holds. Node's socket timer restarts at every read and every completed write, so it fires
 * only when the client stopped reading (or sending) for that long. Set per express request rather than as
 * `server.timeout`, which would also cut socket.io's long-polling requests (held open up to its ping interval on
 * purpose) and the WebSockets' idle keep-alives; once the answer is written Node puts its keep-alive timeout back.
 */
export function stalledAnswerTimeout(stallMs: number, log: Logger): RequestHandler {
  return (req, res, next) => {
    const { method, path } = req; // before routers strip their mount paths
    // A 'timeout' listener on the answer means Node leaves the socket to us: destroy it.
    res.setTimeout(stallMs, () => {
      log.info({ method, path, unsent_bytes: req.socket.writableLength, stall_ms: stallMs }, 'HTTP client stalled; connection closed');
      req.socket.destroy();
    });
    next();
  };
}
