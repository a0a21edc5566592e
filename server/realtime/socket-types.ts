/**
 * The front's socket.io types, from the contract in protocol/socket-events.ts, and a compile-time check
 * that the payload types there accept exactly what the zod schemas in protocol/requests.ts accept (the
 * schemas validate at the edge; the types are what the browser is written against).
 */
import type { Server, Socket } from 'socket.io';
import type { z } from 'zod';
import type { ClientToServerEvents, InterServerEvents, PayloadOf, ServerToClientEvents, SocketData } from '../../protocol/socket-events.js';
import type { RefreshTokenBody, StartRunBody, StopRunBody, SubscribeRunBody, ThreadHistoryBody } from '../../protocol/requests.js';

export type AtollServer = Server<ClientToServerEvents, ServerToClientEvents, InterServerEvents, SocketData>;
export type AtollSocket = Socket<ClientToServerEvents, ServerToClientEvents, InterServerEvents, SocketData>;

type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
type Holds<T extends true> = T;
/** Fails to compile when a payload type and its schema's input drift apart. */
export type PayloadsMatchSchemas = [
  Holds<Same<PayloadOf<'start_agent'>, z.input<typeof StartRunBody>>>,
  Holds<Same<PayloadOf<'stop_agent'>, z.input<typeof StopRunBody>>>,
  Holds<Same<PayloadOf<'subscribe_run'>, z.input<typeof SubscribeRunBody>>>,
  Holds<Same<PayloadOf<'get_thread_history'>, z.input<typeof ThreadHistoryBody>>>,
  Holds<Same<PayloadOf<'refresh_token'>, z.input<typeof RefreshTokenBody>>>,
];
