/**
 * Whose address a request is (TRUST_PROXY): the peer's, or, behind trusted proxies, the client's from
 * X-Forwarded-For. One rule for HTTP (express's `trust proxy`, req.ip) and for the socket.io handshake, so the
 * per-address rate limits and connection caps see the same address either way. The rule is express's own:
 * proxy-addr, the package express uses, with express's reading of the setting (true: every hop; a number: that
 * many hops; addresses and subnets: those proxies).
 */
import type { IncomingMessage } from 'node:http';
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
