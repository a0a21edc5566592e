/**
 * The egress wall: agent code connects only to public addresses (AGENT_EGRESS=public, the default), to none
 * (`none`), or anywhere the host can (`any`); AGENT_EGRESS_ALLOW adds subnets to `public` and `none`.
 *
 * Everything private to the host or its network answers a connection from a cell as it would the front: the
 * front's own API (dev login signs anyone in), a PostgreSQL that trusts its host, a Redis without a password (it
 * carries every user's events between nodes and mints connection tickets), the cloud's metadata service
 * (169.254.169.254: the instance's credentials), the Docker socket, other internal services. A prompt-injected
 * tool asked to fetch such a URL would fetch it. Node's permission model does not check the network (Node 20 to
 * 24; unix sockets included, measured: a worker under it connected to PostgreSQL's socket).
 *
 * Every connection a thread makes, by any library (net, http, fetch's undici, tls, dgram), ends in its handle's
 * native `connect` with the address already resolved: the check is on that address, so a name that resolves to
 * a private address (DNS rebinding included) is refused like the address itself. A refused connection fails the
 * way a firewall's refusal does (`EACCES` on the socket's `error`, fetch's `cause`), counted as wall `egress`.
 * Unix sockets (Pipe) are refused unless `any`. Name lookups still reach the host's resolver.
 */
import ipaddr from 'ipaddr.js';
import net from 'node:net';
import os from 'node:os';
import type { AgentEgress } from '../../protocol/cell-messages.js';
import type { SocketHandles } from './socket-handles.js';

/** libuv's error for a refused operation: what the socket reports, as a kernel's refusal would be. */
const UV_EACCES = -os.constants.errno.EACCES;

type NativeCall = (this: object, ...args: unknown[]) => unknown;

/**
 * Whether agent code may connect to `address` (a literal IP, as the handle receives it). IPv4-mapped IPv6
 * addresses are judged as the IPv4 address they carry; anything else is refused.
 */
export function egressAllows(policy: AgentEgress): (address: unknown) => boolean {
  if (policy.mode === 'any') return () => true;
  const allowed = policy.allow.map((cidr) => ipaddr.parseCIDR(cidr));
  return (address) => {
    // net.isIP is as strict as the native connect (dotted quads only); the ipaddr package alone reads "0x7f.1" too.
    if (typeof address !== 'string' || !net.isIP(address) || !ipaddr.isValid(address)) return false;
    const ip = ipaddr.process(address);
    if (allowed.some(([range, bits]) => range.kind() === ip.kind() && ip.match(range, bits))) return true;
    // The ipaddr package's `unicast` is what no special-purpose registry claims: loopback, private, link-local,
    // unique local, carrier-grade NAT, multicast, the v4-in-v6 translations (6to4, NAT64, Teredo), reserved are not.
    return policy.mode === 'public' && ip.range() === 'unicast';
  };
}

/** Installs the wall on the thread's socket handles (before any agent module loads). */
export function guardEgress(policy: AgentEgress, onRefused: () => void, handles: SocketHandles): void {
  if (policy.mode === 'any') return;
  const allows = egressAllows(policy);
  // Each replaced member holds the only reference to the original. Writable: dgram's udp6 handles assign
  // `connect6`/`send6` to their own `connect`/`send` (an assignment a read-only prototype member would refuse);
  // whatever code assigns there can only call the guarded functions.
  const guard = (proto: object, name: string, addressOf: (args: unknown[]) => unknown) => {
    const original = (proto as Record<string, NativeCall>)[name]!;
    Object.defineProperty(proto, name, {
      value: function guardedConnect(this: object, ...args: unknown[]) {
        const address = addressOf(args);
        if (address !== undefined && !allows(address)) {
          onRefused();
          return UV_EACCES;
        }
        return original.apply(this, args);
      },
      writable: true,
      configurable: false,
      enumerable: true,
    });
  };
  // TCP: connect(req, address, port) and connect6(req, address, port).
  guard(handles.tcp, 'connect', (args) => args[1]);
  guard(handles.tcp, 'connect6', (args) => args[1]);
  // Unix sockets: connect(req, path); a path is never a public address.
  guard(handles.pipe, 'connect', (args) => args[1] ?? '');
  // UDP: connect(address, port); send(req, list, count, port, address, hasCallback) to an unconnected peer, or
  // send(req, list, count, hasCallback) to the connected one (checked at its connect).
  guard(handles.udp, 'connect', (args) => args[0]);
  guard(handles.udp, 'connect6', (args) => args[0]);
  guard(handles.udp, 'send', (args) => (args.length > 4 ? args[4] : undefined));
  guard(handles.udp, 'send6', (args) => (args.length > 4 ? args[4] : undefined));
}
