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
 * What the per-address limits count a client address as (IPV6_BUDGET_PREFIX): an IPv4 address as it is (also one
 * written IPv4-mapped, `::ffff:198.51.100.1`), an IPv6 address as its first `ipv6Prefix` bits (`2001:db8:1::/56`).
 * Keyed on the whole IPv6 address, a client holding a /64 (any host with IPv6) had 2^64 budgets: one per request
 * if it liked (helper-77). /56 by default, as express-rate-limit's `ipKeyGenerator`: what ISPs commonly give a
 * household. Anything else (`unknown`, a name) stays as it is.
 */
export function budgetAddress(address: string, ipv6Prefix: number): string {
  if (!ipaddr.isValid(address)) return address;
  const parsed = ipaddr.process(address);
  if (parsed.kind() === 'ipv4') return parsed.toString();
  const bare = parsed.toString().replace(/%.*$/, ''); // a zone (fe80::1%eth0) names the node's interface, not the client
  return `${ipaddr.IPv6.networkAddressFromCIDR(`${bare}/${ipv6Prefix}`).toString()}/${ipv6Prefix}`;
}
