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
