/**
 * Signing in: dev login (a user id, when the server allows it) or a pasted token. A pasted token is tried
 * against the API before it is accepted, so a wrong one is refused here with the server's reason.
 */
import { ApiError, type Api } from '../shared/api';
import { byId } from '../shared/dom';
import { sentenceFor } from '../shared/error-text';
import { sessionFromToken, type Session } from './session';

export function setUpSignIn(opts: { devLogin: boolean; api: Api; tryToken(token: string): Promise<void>; signedIn(session: Session): void }): { show(message?: string): void; hide(): void } {
  const section = byId('sign-in');
  const devForm = byId<HTMLFormElement>('dev-login-form');
  const devUser = byId<HTMLInputElement>('dev-user');
  const tokenForm = byId<HTMLFormElement>('token-form');
  const tokenInput = byId<HTMLTextAreaElement>('token-input');
  const error = byId('sign-in-error');
  devForm.hidden = !opts.devLogin;
  byId('dev-login-off').hidden = opts.devLogin;

  const fail = (err: unknown) => {
    const code = err instanceof ApiError ? err.code : 'INTERNAL';
    error.textContent = `${code}: ${sentenceFor(code)} ${err instanceof Error ? `(${err.message})` : ''}`;
  };
  const busy = (form: HTMLFormElement, on: boolean) => form.querySelectorAll('button').forEach((b) => (b.disabled = on));

  devForm.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    error.textContent = '';
    busy(devForm, true);
    try {
      const { token } = await opts.api.devLogin(devUser.value.trim());
      const session = sessionFromToken(token, 'dev');
      if (!session) throw new ApiError('INTERNAL', 'the server answered with something that is not a token', 0);
      opts.signedIn(session);
    } catch (err) {
      fail(err);
    } finally {
      busy(devForm, false);
    }
  });

  tokenForm.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    error.textContent = '';
    const session = sessionFromToken(tokenInput.value, 'token');
    if (!session) {
      error.textContent = 'This is not a token: paste the whole JWT (three parts separated by dots).';
      tokenInput.focus();
      return;
    }
    busy(tokenForm, true);
    try {
      await opts.tryToken(session.token);
      tokenInput.value = '';
      opts.signedIn(session);
    } catch (err) {
      fail(err);
    } finally {
      busy(tokenForm, false);
    }
  });

  return {
    show(message) {
      section.hidden = false;
      error.textContent = message ?? '';
      (opts.devLogin ? devUser : tokenInput).focus();
    },
    hide() {
      section.hidden = true;
    },
  };
}
