/**
 * The metrics token (METRICS_TOKEN) for a server that asks for one: asked for once, kept in sessionStorage so a
 * reload does not ask again and no other tab or later visit has it (as the chat page keeps its session).
 */
import { byId } from '../shared/dom';

const KEY = 'atoll.metricsToken';

export interface MetricsToken {
  /** The token a /metrics request carries now: the one given, or null before any. */
  current(): string | null;
  /** The server refused a request sent with `sent` (401): show the form, saying whether that token was wrong. */
  refused(sent: string | null): void;
}

/** The headers of a /metrics request carrying `token`. */
export function tokenHeaders(token: string | null): Record<string, string> {
  return token ? { authorization: `Bearer ${token}` } : {};
}

export function createMetricsToken(store: Storage, onGiven: () => void): MetricsToken {
  const form = byId<HTMLFormElement>('metrics-token-form');
  const input = byId<HTMLInputElement>('metrics-token');
  const error = byId('metrics-token-error');
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    const token = input.value.trim();
    if (!token) return;
    // What METRICS_TOKEN may be: anything else could not even travel in a header (fetch would throw), nor match.
    if (!/^[\x21-\x7e]+$/.test(token)) {
      error.textContent = 'A metrics token is printable ASCII without spaces: check METRICS_TOKEN.';
      return;
    }
    store.setItem(KEY, token);
    input.value = '';
    form.hidden = true;
    onGiven();
  });
  return {
    current: () => store.getItem(KEY),
    refused: (sent) => {
      // A token given while that request was on its way is tried next, not thrown away.
      if (store.getItem(KEY) !== sent) return;
      // Said once for the token refused; the polls without a token that follow leave it on screen.
      if (sent) error.textContent = 'That token was refused: check METRICS_TOKEN and try again.';
      store.removeItem(KEY);
      if (form.hidden) {
        form.hidden = false;
        input.focus();
      }
    },
  };
}
