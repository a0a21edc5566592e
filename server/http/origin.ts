import { isIP } from 'node:net';

/**
 * Which browser origins may call Atoll: the server's own, plus CORS_ORIGINS. One rule for HTTP (CORS
 * headers, and a refusal of requests from other origins) and for the socket.io handshake. A request
 * without an Origin header is not from a browser page and is judged by its token alone.
 */
export function originAllowed(origin: string | undefined, host: string | undefined, allowList: readonly string[]): boolean {
  if (!origin) return true;
  if (allowList.includes(origin)) return true;
  try {
    // Same origin: the page was served by this server (behind a TLS proxy the scheme differs; the host does not).
    return host !== undefined && new URL(origin).host === host;
  } catch {
    return false; // "null" (sandboxed frames, file: pages) and garbage
  }
}

/**
 * Whether dev login may answer a request addressed to `host` (its Host header): a loopback name, an IP address, or
 * the host of a CORS_ORIGINS entry. A page of any site can have its name resolve to this server (DNS rebinding): its
 * requests then carry that name as Host and as Origin, and pass as same-origin; with dev login any such page minted
 * a token for any user (helper-77). An IP address or `localhost` cannot be a stranger's name.
 */
export function devLoginHostAllowed(host: string | undefined, allowList: readonly string[]): boolean {
  if (!host) return false;
  let hostname: string;
  try {
    hostname = new URL(`http://${host}`).hostname;
  } catch {
    return false;
  }
  if (hostname === 'localhost' || hostname.endsWith('.localhost') || isIP(hostname.replace(/^\[|\]$/g, '')) !== 0) return true;
  return allowList.some((origin) => {
    try {
      return new URL(origin).hostname === hostname;
    } catch {
      return false;
    }
  });
}
