/**
 * socket.io: the handshake authenticates (token → user id), each socket joins its own user's room and no
 * other, and client events are validated before use. Runs' events reach the room through `broadcast`.
 */
import type { Server as HttpServer } from 'node:http';
import { Server, type Socket } from 'socket.io';
import type { TokenService } from '../auth/tokens.js';
import type { Logger } from '../logger.js';
import { CodedError, toErrorBody, type ErrorBody } from '../protocol/errors.js';
import type { RunEventEnvelope } from '../protocol/events.js';
import { StartRunBody, StopRunBody, normalizeInput, parse } from '../protocol/requests.js';
import type { RunService } from '../runs/run-service.js';

type Ack = (reply: unknown) => void;

export const roomOf = (userId: string) => `user:${userId}`;

export function createSocketServer(deps: { http: HttpServer; tokens: TokenService; runs: RunService; log: Logger; maxInputBytes: number }) {
  const { tokens, runs, log } = deps;
  const io = new Server(deps.http, {
    maxHttpBufferSize: Math.max(deps.maxInputBytes * 2, 100_000),
    serveClient: false,
  });

  io.use((socket, next) => {
    try {
      socket.data.userId = tokens.verify(socket.handshake.auth?.token);
      next();
    } catch (err) {
      const body = toErrorBody(err);
      next(Object.assign(new Error(body.code), { data: body }));
    }
  });

  const handlers: Record<string, (socket: Socket, payload: unknown) => Promise<unknown>> = {
    async start_agent(socket, payload) {
      const body = parse(StartRunBody, payload, 'start_agent payload');
      const run = await runs.start(socket.data.userId, {
        agent: body.agent,
        input: normalizeInput(body.input, deps.maxInputBytes),
        threadId: body.thread_id ?? null,
        correlationId: body.correlation_id ?? null,
      });
      return { run_id: run.id, thread_id: run.threadId };
    },
    async stop_agent(socket, payload) {
      const body = parse(StopRunBody, payload, 'stop_agent payload');
      const run = await runs.cancel(socket.data.userId, body.run_id);
      return { run_id: run.id, status: run.status };
    },
  };

  io.on('connection', (socket) => {
    const userId = socket.data.userId as string;
    void socket.join(roomOf(userId));
    socket.onAny((event: string, ...args: unknown[]) => {
      const ack: Ack | null = typeof args.at(-1) === 'function' ? (args.at(-1) as Ack) : null;
      const handler = Object.prototype.hasOwnProperty.call(handlers, event) ? handlers[event] : undefined;
      const reply = (r: unknown) => ack?.(r);
      const fail = (error: ErrorBody) => (ack ? ack({ error }) : socket.emit('request_error', { event, error }));
      if (!handler) return fail({ code: 'BAD_REQUEST', message: `unknown event ${JSON.stringify(String(event).slice(0, 64))}` });
      handler(socket, args[0]).then(reply, (err) => {
        if (!(err instanceof CodedError)) log.error({ err: String((err as Error)?.stack ?? err), event, user_id: userId }, 'socket handler failed');
        fail(toErrorBody(err));
      });
    });
  });

  return {
    io,
    broadcast(userId: string, envelope: RunEventEnvelope): void {
      io.to(roomOf(userId)).emit(envelope.type, envelope);
    },
    connections: () => io.engine.clientsCount,
  };
}
