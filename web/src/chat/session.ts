/**
 * The signed-in session. Kept in sessionStorage (not localStorage): it survives a reload of the tab, so a
 * reload mid-run picks the conversation up again, but it is not shared with other tabs or kept once the
 * tab is closed. The user id shown is read from the token's `sub`; the server trusts only its signature.
 */
export interface Session {
  token: string;
  userId: string;
  /** 'dev': from dev login, which can be asked again when the token nears its expiry. */
  via: 'dev' | 'token';
  /** Epoch ms, or null when the token never expires. */
  expiresAt: number | null;
}

/** Reads `sub` and `exp` from a JWT without verifying it (the server does that); null when it is not one. */
export function sessionFromToken(token: string, via: Session['via']): Session | null {
  const parts = token.trim().split('.');
  if (parts.length !== 3) return null;
  try {
    const json = atob(parts[1].replace(/-/g, '+').replace(/_/g, '/'));
    const claims = JSON.parse(json) as { sub?: unknown; exp?: unknown };
    if (typeof claims.sub !== 'string' || !claims.sub) return null;
    return { token: token.trim(), userId: claims.sub, via, expiresAt: typeof claims.exp === 'number' ? claims.exp * 1000 : null };
  } catch {
    return null;
  }
}

export interface SessionStore {
  load(): Session | null;
  save(session: Session): void;
  clear(): void;
}

export function createSessionStore(storage: Storage, key = 'atoll.session'): SessionStore {
  return {
    load() {
      try {
        const saved = JSON.parse(storage.getItem(key) ?? 'null') as Session | null;
        if (!saved || typeof saved.token !== 'string') return null;
        const fresh = sessionFromToken(saved.token, saved.via === 'dev' ? 'dev' : 'token');
        return fresh && (fresh.expiresAt === null || fresh.expiresAt > Date.now()) ? fresh : null;
      } catch {
        return null;
      }
    },
    save(session) {
      storage.setItem(key, JSON.stringify(session));
    },
    clear() {
      storage.removeItem(key);
    },
  };
}
