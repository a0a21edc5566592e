/** The HTTP half of the API the pages use (same origin, bearer token), with coded errors. */
import { type AnyRunEventEnvelope as Envelope } from '../../../protocol/events';
import type { AgentInfo, AgentList, DevLoginReply, PageMeta, RunEventsPage, ThreadPage, ThreadView, WireError as ErrorBody } from '../../../protocol/views';

export class ApiError extends Error {
  constructor(
    readonly code: string,
    message: string,
    readonly status: number,
    /** The server's retry hint (RATE_LIMITED, OVERLOADED, SHUTTING_DOWN). */
    readonly retryAfterMs: number | null = null,
  ) {
    super(message);
  }
}

export interface Api {
  meta(): Promise<PageMeta>;
  devLogin(userId: string): Promise<DevLoginReply>;
  agents(): Promise<AgentInfo[]>;
  threads(): Promise<ThreadView[]>;
  createThread(title: string): Promise<ThreadView>;
  /** Removes a conversation with everything in it (THREAD_BUSY while it is answering). */
  deleteThread(threadId: string): Promise<void>;
  /** A run's logged events (the whole log of a finished run fits in one page of 1000). */
  runEvents(runId: string): Promise<Envelope[]>;
}

export function createApi(token: () => string | null): Api {
  async function call<T>(method: string, path: string, body?: unknown): Promise<T> {
    const headers: Record<string, string> = {};
    const t = token();
    if (t) headers.authorization = `Bearer ${t}`;
    if (body !== undefined) headers['content-type'] = 'application/json';
    let res: Response;
    try {
      res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), cache: 'no-store' });
    } catch (err) {
      throw new ApiError('NETWORK', String((err as Error)?.message ?? err), 0);
    }
    const parsed = (await res.json().catch(() => null)) as ({ error?: ErrorBody } & T) | null;
    if (!res.ok) {
      const error = parsed?.error;
      const retryAfter = Number(res.headers.get('retry-after'));
      throw new ApiError(error?.code ?? 'INTERNAL', error?.message ?? `HTTP ${res.status}`, res.status, retryAfter > 0 ? retryAfter * 1000 : null);
    }
    return parsed as T;
  }
  return {
    meta: () => call<PageMeta>('GET', '/v1/meta'),
    devLogin: (userId) => call<DevLoginReply>('POST', '/v1/auth/dev-login', { user_id: userId }),
    agents: async () => (await call<AgentList>('GET', '/v1/agents')).agents,
    threads: async () => (await call<ThreadPage>('GET', '/v1/threads?limit=50')).threads,
    createThread: (title) => call<ThreadView>('POST', '/v1/threads', { title }),
    deleteThread: async (threadId) => void (await call<null>('DELETE', `/v1/threads/${encodeURIComponent(threadId)}`)),
    runEvents: async (runId) => {
      // Pages are capped by size as well as by count: read on while the server names a next page.
      const events: Envelope[] = [];
      for (let after: number | null = 0; after !== null; ) {
        const page: RunEventsPage = await call<RunEventsPage>('GET', `/v1/runs/${encodeURIComponent(runId)}/events?after_seq=${after}&limit=1000`);
        events.push(...page.events);
        after = page.next_after_seq;
      }
      return events;
    },
  };
}
