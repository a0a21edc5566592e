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
 * native `connect`/`send` with the address already resolved: the check is on that address, so a name that
 * resolves to a private address (DNS rebinding included) is refused like the address itself. The DNS resolver
 * (c-ares) makes its own sockets to the servers it is given: those are checked where they are set. A refused
 * connection fails the way a firewall's refusal does (`EACCES` on the socket's `error`, fetch's `cause`), counted
 * as wall `egress`. Unix sockets (Pipe) are refused unless `any`.
 *
 * The check reads nothing agent code can change, with or without THREAD_LOCKDOWN (found by an attacker's-eye
 * review: a check that called into the ipaddr package at connect time was turned off by patching that package's
 * shared instance, and without lockdown by replacing `Array.prototype.some`): the address ranges are turned into
 * bytes here, at install, and each address is read into bytes by code of this module that calls only functions
 * and constructors taken before any agent module loads, and indexes only its own arrays.
 */
import ipaddr from 'ipaddr.js';
import net from 'node:net';
import os from 'node:os';
import type { AgentEgress } from '../../protocol/cell-messages.js';
import { refusal } from './host-guards.js';
import type { SocketHandles } from './socket-handles.js';

/** libuv's error for a refused operation: what the socket reports, as a kernel's refusal would be. */
const UV_EACCES = -os.constants.errno.EACCES;

// Taken at install: agent code may replace `net.isIP`, `Reflect.apply` or String.prototype members later.
const isIP = net.isIP;
const apply = Reflect.apply;
const isArray = Array.isArray;
const define = Reflect.defineProperty;
const Bytes = Uint8Array;
const Words = Uint16Array;
const codeAt = Function.prototype.call.bind(String.prototype.charCodeAt) as (s: string, i: number) => number;

/** A subnet as 16 bytes (IPv4 as its IPv4-mapped IPv6 form) and a prefix length. */
interface Subnet {
  readonly bytes: Uint8Array;
  readonly bits: number;
}

function subnet(cidr: string): Subnet {
  const [range, bits] = ipaddr.parseCIDR(cidr);
  if (range.kind() === 'ipv6') return { bytes: Uint8Array.from(range.toByteArray()), bits };
  return { bytes: Uint8Array.from((range as ipaddr.IPv4).toIPv4MappedAddress().toByteArray()), bits: bits + 96 };
}

/**
 * What `public` refuses: every special-purpose range the ipaddr package knows (loopback, private, link-local,
 * unique local, carrier-grade NAT, multicast, broadcast, reserved, the v4-in-v6 translations: 6to4, NAT64,
 * Teredo), IPv4-compatible IPv6 (::/96, deprecated; `::127.0.0.1`), and the host's own addresses, public ones
 * included (a connection to them reaches whatever listens on 0.0.0.0). IPv4-mapped addresses are judged as the IPv4
 * address they carry, so `::ffff:0:0/96` itself is not one of them.
 */
function refusedSubnets(hostAddresses: readonly string[]): Subnet[] {
  const cidrs: string[] = ['::/96'];
  for (const kind of [ipaddr.IPv4, ipaddr.IPv6]) {
    const special = (kind.prototype as unknown as { SpecialRanges: Record<string, [ipaddr.IPv4 | ipaddr.IPv6, number] | [ipaddr.IPv4 | ipaddr.IPv6, number][]> }).SpecialRanges;
    for (const [name, entry] of Object.entries(special)) {
      if (name === 'unicast' || name === 'ipv4Mapped') continue;
      const list = Array.isArray(entry[0]) ? (entry as [ipaddr.IPv4 | ipaddr.IPv6, number][]) : [entry as [ipaddr.IPv4 | ipaddr.IPv6, number]];
      for (const [range, bits] of list) cidrs.push(`${range.toString()}/${bits}`);
    }
  }
  for (const address of hostAddresses) cidrs.push(`${address}/${net.isIPv4(address) ? 32 : 128}`);
  return cidrs.map(subnet);
}

/** The addresses of this host's interfaces, as the worker starts. */
export function ownAddresses(): string[] {
  try {
    return Object.values(os.networkInterfaces()).flatMap((list) => (list ?? []).map((i) => i.address.split('%')[0]!));
  } catch {
    // No interface list (a sandbox that hides it): the special ranges still hold.
    return [];
  }
}

function hexValue(c: number): number {
  if (c >= 48 && c <= 57) return c - 48;
  if (c >= 97 && c <= 102) return c - 87;
  if (c >= 65 && c <= 70) return c - 55;
  return -1;
}

/** Dotted-quad IPv4 from `from` to `to` into out[at..at+3]. */
function readIPv4(s: string, from: number, to: number, out: Uint8Array, at: number): boolean {
  let part = 0;
  let value = 0;
  let digits = 0;
  for (let i = from; i <= to; i++) {
    const c = i === to ? 46 : codeAt(s, i);
    if (c === 46) {
      if (digits === 0 || digits > 3 || value > 255 || part > 3) return false;
      out[at + part] = value;
      part++;
      value = 0;
      digits = 0;
    } else if (c >= 48 && c <= 57) {
      // No leading zero (inet_pton reads none; "010" is not 10 everywhere).
      if (digits === 1 && value === 0) return false;
      value = value * 10 + (c - 48);
      digits++;
    } else {
      return false;
    }
  }
  return part === 4;
}

/** An IP address (as net.isIP accepted it; an IPv6 zone is ignored) as 16 bytes, IPv4 as IPv4-mapped; or null. */
export function addressBytes(s: string): Uint8Array | null {
  const family = isIP(s);
  const out = new Bytes(16);
  if (family === 4) {
    out[10] = 0xff;
    out[11] = 0xff;
    return readIPv4(s, 0, s.length, out, 12) ? out : null;
  }
  if (family !== 6) return null;
  // A zone (`%eth0`) is refused: zones belong to link-local addresses, refused anyway, and libuv reads only the
  // first 39 characters before one (an attacker's-eye review: `0000:…:ffff:1.2.3.40%x` was checked as 1.2.3.40
  // and connected to 1.2.3.4).
  const end = s.length;
  for (let i = 0; i < end; i++) if (codeAt(s, i) === 37) return null;
  const groups = new Words(8);
  let count = 0;
  let gap = -1;
  let i = 0;
  if (end >= 2 && codeAt(s, 0) === 58 && codeAt(s, 1) === 58) {
    gap = 0;
    i = 2;
  }
  while (i < end) {
    let j = i;
    let value = 0;
    let dotted = false;
    while (j < end) {
      const c = codeAt(s, j);
      if (c === 58) break;
      if (c === 46) {
        dotted = true;
        break;
      }
      const h = hexValue(c);
      if (h < 0 || j - i >= 4) return null;
      value = value * 16 + h;
      j++;
    }
    if (dotted) {
      const tail = new Bytes(4);
      if (count > 6 || !readIPv4(s, i, end, tail, 0)) return null;
      groups[count++] = tail[0]! * 256 + tail[1]!;
      groups[count++] = tail[2]! * 256 + tail[3]!;
      break;
    }
    // As strict as inet_pton on its own, whatever net.isIP said: 1 to 4 hex digits a group.
    if (count > 7 || j === i) return null;
    groups[count++] = value;
    if (j >= end) break;
    if (j + 1 < end && codeAt(s, j + 1) === 58) {
      if (gap !== -1) return null;
      gap = count;
      i = j + 2;
    } else {
      i = j + 1;
    }
  }
  if (gap === -1 ? count !== 8 : count > 7) return null;
  const tailCount = gap === -1 ? 0 : count - gap;
  const headCount = count - tailCount;
  for (let g = 0; g < 8; g++) {
    let value = 0;
    if (g < headCount) value = groups[g]!;
    else if (g >= 8 - tailCount) value = groups[headCount + g - (8 - tailCount)]!;
    out[g * 2] = (value - (value % 256)) / 256;
    out[g * 2 + 1] = value % 256;
  }
  return out;
}

function inSubnet(address: Uint8Array, net: Subnet): boolean {
  let bits = net.bits;
  for (let i = 0; i < 16 && bits > 0; i++) {
    if (bits >= 8) {
      if (address[i] !== net.bytes[i]) return false;
      bits -= 8;
    } else {
      const shift = 2 ** (8 - bits);
      return (address[i]! - (address[i]! % shift)) === (net.bytes[i]! - (net.bytes[i]! % shift));
    }
  }
  return true;
}

function inAny(address: Uint8Array, subnets: readonly Subnet[]): boolean {
  for (let i = 0; i < subnets.length; i++) if (inSubnet(address, subnets[i]!)) return true;
  return false;
}

/** Whether agent code may connect to `address` (a literal IP, as the handle receives it); anything else is refused. */
export function egressAllows(policy: AgentEgress, hostAddresses: readonly string[] = ownAddresses()): (address: unknown) => boolean {
  if (policy.mode === 'any') return () => true;
  const allowed = policy.allow.map(subnet);
  const refused = policy.mode === 'public' ? refusedSubnets(hostAddresses) : null;
  return (address) => {
    if (typeof address !== 'string') return false;
    const bytes = addressBytes(address);
    if (bytes === null) return false;
    if (inAny(bytes, allowed)) return true;
    return refused !== null && !inAny(bytes, refused);
  };
}

/**
 * Replaces a native socket handle's member with one that refuses (EACCES, as a firewall would) the calls `permitted`
 * does not accept. The replacement holds the only reference to the original. Writable: dgram's udp6 handles assign
 * `connect6`/`send6` to their own `connect`/`send` (an assignment a read-only prototype member would refuse);
 * whatever code assigns there can only call the guarded functions.
 */
function guardMember(proto: object, name: string, permitted: (args: unknown[]) => boolean, onRefused: () => void): void {
  const original = (proto as Record<string, (...args: unknown[]) => unknown>)[name]!;
  Object.defineProperty(proto, name, {
    value: function guarded(this: object, ...args: unknown[]) {
      if (!permitted(args)) {
        onRefused();
        return UV_EACCES;
      }
      return apply(original, this, args);
    },
    writable: true,
    configurable: false,
    enumerable: true,
  });
}

/**
 * The listening wall, whatever AGENT_EGRESS says: a thread listens on nothing (no TCP server, no unix socket) and
 * binds no port of its own choosing (TCP or UDP). Node's permission model checks neither (Node 20 to 24), and the
 * egress wall checks only where a socket connects. A run that listened on the port of a local model server that was
 * down (LLM_BASE_URL on 127.0.0.1) received every cell's model requests, other users' prompts and the LLM key with
 * them, and answered them as the model; a unix socket's bind made a file wherever the cell's OS user may write, past
 * --allow-fs-write (an attacker's-eye review). Port 0 alone is not enough for a server: binding port 0 again and
 * again reached a chosen port of the ephemeral range in ~5,000 binds, 144 ms (a front on PORT=0 has one). A
 * socket's bind to port 0, the kernel's pick (a UDP socket's first send), stays allowed. Refused as `egress`, the
 * way a firewall refuses (EACCES).
 */
export function guardListening(onRefused: () => void, handles: SocketHandles): void {
  const guard = (proto: object, name: string, permitted: (args: unknown[]) => boolean) => guardMember(proto, name, permitted, onRefused);
  // bind(address, port, flags) and bind6(address, port, flags): the port a primitive 0, the very value the native
  // side reads (a client's explicit local port 0). A unix socket's bind(path): never (a path, or an abstract name
  // another service may answer at).
  for (const proto of [handles.tcp, handles.udp]) for (const name of ['bind', 'bind6']) guard(proto, name, (args) => args[1] === 0);
  guard(handles.pipe, 'bind', () => false);
  // listen(backlog): never, on TCP (an unbound socket's listen takes an ephemeral port) or a unix socket.
  guard(handles.tcp, 'listen', () => false);
  guard(handles.pipe, 'listen', () => false);
}

/** Installs the wall on the thread's socket handles and its DNS resolvers (before any agent module loads). */
export function guardEgress(policy: AgentEgress, onRefused: () => void, handles: SocketHandles): void {
  if (policy.mode === 'any') return;
  const allows = egressAllows(policy);
  // The address checked is a primitive string, the very value the native function reads.
  const guard = (proto: object, name: string, permitted: (args: unknown[]) => boolean) => guardMember(proto, name, permitted, onRefused);
  // TCP: connect(req, address, port) and connect6(req, address, port).
  guard(handles.tcp, 'connect', (args) => allows(args[1]));
  guard(handles.tcp, 'connect6', (args) => allows(args[1]));
  // Unix sockets: never (a path named like a public address is still a path).
  guard(handles.pipe, 'connect', () => false);
  // UDP: connect(address, port); send(req, list, count, port, address, hasCallback) to an unconnected peer, or
  // send(req, list, count, hasCallback) to the connected one (checked at its connect).
  guard(handles.udp, 'connect', (args) => allows(args[0]));
  guard(handles.udp, 'connect6', (args) => allows(args[0]));
  guard(handles.udp, 'send', (args) => args.length <= 4 || allows(args[4]));
  guard(handles.udp, 'send6', (args) => args.length <= 4 || allows(args[4]));

  // c-ares sends its queries (UDP, then TCP for a truncated answer) to its servers from sockets of its own: a
  // server list goes through only if every server is allowed. Copied into fresh arrays of primitives first, so
  // what is checked is what the native side reads (an entry with getters could answer differently twice).
  const setServers = (handles.resolver as Record<string, (...args: unknown[]) => unknown>).setServers!;
  Object.defineProperty(handles.resolver, 'setServers', {
    value: function guardedSetServers(this: object, list: unknown) {
      const copy: [unknown, unknown, unknown][] = [];
      const length = isArray(list) ? (list as unknown[]).length : -1;
      for (let i = 0; i < length; i++) {
        const entry = (list as unknown[])[i] as unknown[] | undefined;
        const family = entry?.[0];
        const address = entry?.[1];
        const port = entry?.[2];
        if (typeof family !== 'number' || typeof port !== 'number' || !allows(address)) {
          onRefused();
          throw refusal(`a DNS server at ${String(address)}`);
        }
        // Defined, not assigned: an assignment would call a setter agent code put on Array.prototype and leave a
        // hole the native side reads through the prototype (an attacker's-eye review, without lockdown).
        define(copy, i, { value: [family, address, port], writable: true, enumerable: true, configurable: true });
      }
      if (length < 0) {
        onRefused();
        throw refusal('a DNS server list that is not an array');
      }
      return apply(setServers, this, [copy]);
    },
    writable: true,
    configurable: false,
    enumerable: true,
  });
}
