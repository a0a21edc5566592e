/**
 * The native handle classes every socket of a thread goes through: TCP, Pipe (Unix sockets) and UDP, and the DNS
 * resolver's channel (c-ares, which makes sockets of its own to the servers it is given). Their classes
 * are not exported (and `process.binding` is refused under the permission model), so their prototypes are found
 * from throwaway sockets. The descriptor wall (fd-guards.ts) and the egress wall (egress-guards.ts) replace their
 * members; each handle a thread makes later has these prototypes.
 */
import type dgram from 'node:dgram';
import type dns from 'node:dns';
import type net from 'node:net';

export interface SocketHandles {
  readonly tcp: object;
  readonly pipe: object;
  readonly udp: object;
  readonly resolver: object;
  /**
   * AsyncWrap's native `getAsyncId`, shared by every native handle and request: it answers -1 once the wrap is
   * freed (closed, or done), which agent code cannot bring about sooner, where async_hooks' destroy can be emitted
   * by agent code for any id.
   */
  readonly getAsyncId: (this: object) => number;
}

export function socketHandles(modules: { net: typeof net; dgram: typeof dgram; dns: typeof dns }): SocketHandles {
  const found: object[] = [];
  // A connect creates the socket's handle at once; nothing is listening on port 0 or at an empty abstract path.
  for (const target of [{ port: 0, host: '127.0.0.1' }, { path: '\0atoll-socket-handles' }]) {
    const socket = new modules.net.Socket();
    socket.on('error', () => undefined);
    socket.connect(target as net.NetConnectOpts);
    const handle = (socket as unknown as { _handle: object | null })._handle;
    socket.destroy();
    if (handle) found.push(Object.getPrototypeOf(handle) as object);
  }
  const udp = modules.dgram.createSocket('udp4');
  for (const key of Object.getOwnPropertySymbols(udp)) {
    const handle = (udp as unknown as Record<symbol, { handle?: object } | undefined>)[key]?.handle;
    if (handle && typeof handle === 'object') found.push(Object.getPrototypeOf(handle) as object);
  }
  udp.close();
  const channel = (new modules.dns.Resolver() as unknown as { _handle?: object })._handle;
  const resolver = channel ? (Object.getPrototypeOf(channel) as object) : undefined;
  const [tcp, pipe, udpProto] = found;
  const has = (proto: object | undefined, ...names: string[]) => proto !== undefined && names.every((n) => typeof (proto as Record<string, unknown>)[n] === 'function');
  if (found.length !== 3 || !has(tcp, 'open', 'connect', 'connect6', 'bind', 'bind6', 'listen') || !has(pipe, 'open', 'connect', 'bind', 'listen') || !has(udpProto, 'open', 'connect', 'connect6', 'send', 'send6', 'bind', 'bind6') || !has(resolver, 'setServers')) {
    // Fail closed: a worker whose walls could not be built must not run agent code.
    throw new Error('the socket walls could not find the TCP, Pipe, UDP and DNS channel classes on this Node version');
  }
  let getAsyncId: unknown;
  for (let proto: object | null = tcp!; proto && getAsyncId === undefined; proto = Object.getPrototypeOf(proto) as object | null) {
    if (Object.prototype.hasOwnProperty.call(proto, 'getAsyncId')) getAsyncId = (proto as Record<string, unknown>).getAsyncId;
  }
  if (typeof getAsyncId !== 'function') throw new Error("the socket walls could not find AsyncWrap's getAsyncId on this Node version");
  return { tcp: tcp!, pipe: pipe!, udp: udpProto!, resolver: resolver!, getAsyncId: getAsyncId as (this: object) => number };
}

/**
 * Whether a native wrap (a handle or a request) is freed, by AsyncWrap's `getAsyncId` (SocketHandles.getAsyncId): -1
 * once Node is done with it. null: `resource` is no native wrap (it holds nothing of Node's).
 */
export function wrapFreed(getAsyncId: (this: object) => number, resource: object): boolean | null {
  try {
    return Reflect.apply(getAsyncId, resource, []) === -1;
  } catch {
    return null;
  }
}
