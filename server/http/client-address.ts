/**
 * Whose address a request is (TRUST_PROXY): the peer's, or, behind trusted proxies, the client's from
 * X-Forwarded-For. One rule for HTTP (express's `trust proxy`, req.ip) and for the socket.io handshake, so the
 * per-address rate limits and connection caps see the same address either way. The rule is express's own:
 * proxy-addr, the package express uses, with express's reading of the setting (true: every hop; a number: that
 * many hops; addresses and subnets: those proxies).
 */
import type { IncomingMessage } from 'node:http';
import ipaddr from 'ipaddr.js';
import proxyAddr from 'proxy-addr';
import type { TrustProxy } from '../config.js';

export type TrustFunction = (address: string, hop: number) => boolean;

/** Whether to trust the hop-th address from the socket (0: the peer itself), as express compiles `trust proxy`. */
export function trustFunction(setting: TrustProxy): TrustFunction {
  if (setting === true) return () => true;
  if (setting === false) return () => false;
  if (typeof setting === 'number') return (_address, hop) => hop < setting;
  return proxyAddr.compile([...setting]);
}

/** The client's address of a request (or of a socket.io handshake: its headers and the peer's address). */
export function clientAddress(req: Pick<IncomingMessage, 'headers'> & { socket: { remoteAddress?: string } }, trust: TrustFunction): string {
  return proxyAddr(req as IncomingMessage, trust);
}

/**
 * What the per-address limits count a client address as (IPV6_BUDGET_PREFIX): an IPv4 address as it is, however it
 * comes (`::ffff:198.51.100.1`; through a NAT64 or SIIT translator, `64:ff9b::198.51.100.1`, each IPv4 client its
 * own; through Teredo or 6to4, the IPv4 address it carries), any other IPv6 address as its first `ipv6Prefix` bits
 * (`2001:db8:1:2::/64`). Keyed on the whole IPv6 address, a client holding a /64 (any host with IPv6) had 2^64
 * budgets: one per request if it liked (helper-77). /64 by default: what one host holds; a /56 is often a household,
 * but mobile networks give each device a /64 out of shared ones, so a /56 would put strangers on one budget.
 * Anything else (`unknown`, a name) stays as it is.
 */
export function budgetAddress(address: string, ipv6Prefix: number): string {
  if (!ipaddr.isValid(address)) return address;
  const parsed = ipaddr.process(address);
  if (parsed.kind() === 'ipv4') return parsed.toString();
  const range = parsed.range();
  const bytes = parsed.toByteArray();
  // The well-known NAT64 prefix and SIIT's: the IPv4 address in the last 32 bits (within RFC 8215's local-use
  // 64:ff9b:1::/48, which the ipaddr package counts as rfc6052 too, a translator may put it elsewhere: the prefix rule applies).
  if ((range === 'rfc6052' && bytes.slice(4, 12).every((b) => b === 0)) || range === 'rfc6145') return bytes.slice(12).join('.');
  if (range === 'teredo') return bytes.slice(12).map((b) => b ^ 0xff).join('.');
  if (range === '6to4') return bytes.slice(2, 6).join('.');
  const bare = parsed.toString().replace(/%.*$/, ''); // a zone (fe80::1%eth0) names the node's interface, not the client
  if (range === 'loopback' || range === 'unspecified') return bare;
  return `${ipaddr.IPv6.networkAddressFromCIDR(`${bare}/${ipv6Prefix}`).toString()}/${ipv6Prefix}`;
}
