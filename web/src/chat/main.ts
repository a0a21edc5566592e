/**
 * The chat page's composition root: the only place that holds the page's state (session, socket, thread
 * list, the shown conversation) and wires the modules together.
 *
 * Delivery rules the page relies on (README, "Wire contract"): a socket gets every event of the runs that
 * start while it is connected; a run already under way (after a reload, a reconnect, in a thread opened
 * later) is joined with subscribe_run from the last seq seen, and the page drops any seq it already has.
 */
import { ApiError, createApi } from '../shared/api';
import { byId } from '../shared/dom';
import { sentenceFor } from '../shared/error-text';
import { coalesce } from '../shared/debounce';
import { randomId } from '../shared/ids';
import { type AnyRunEventEnvelope as Envelope } from '../../../protocol/events';
import { type MessageView, type PageMeta, type ThreadView } from '../../../protocol/views';
import { setUpComposer } from './composer';
import { openConnection, type Connection, type RequestName } from './connection';
import type { PayloadOf, ReplyOf } from '../../../protocol/socket-events';
import { createConversation, emptyState, type Conversation } from './conversation';
import { createMarkdown } from './markdown';
import type { RunState } from './run-state';
import { createSessionStore, type Session } from './session';
import { setUpSignIn } from './sign-in';
import { createThreadList } from './thread-list';

const HISTORY_PAGE = 100;

/** The conversation named by the URL (`#thread=<id>`), which survives a reload; a malformed link names none. */
function threadInUrl(): string | null {
  const m = /^#thread=(.+)$/.exec(location.hash);
  if (!m) return null;
  try {
    return decodeURIComponent(m[1]);
  } catch {
    // Not valid percent-encoding (`%E0%A4%A`): a hand-edited or cut link, not a thread id this page made.
    return null;
  }
}

function startChatPage(): void {
  const els = {
    chat: byId('chat'),
    whoami: byId('whoami'),
    signOut: byId<HTMLButtonElement>('sign-out'),
    connection: byId('connection'),
    announcer: byId('announcer'),
    notice: byId('llm-notice'),
    turns: byId<HTMLOListElement>('turns'),
    scroller: byId('messages'),
    title: byId('conversation-title'),
    newThread: byId<HTMLButtonElement>('new-thread'),
    threadsToggle: byId<HTMLButtonElement>('threads-toggle'),
    threadsPanel: byId('threads'),
    composerError: byId('composer-error'),
  };
  const store = createSessionStore(sessionStorage);
  let session: Session | null = null;
  let meta: PageMeta = { dev_login: false, llm_configured: false, max_input_bytes: Infinity };
  let conn: Connection | null = null;
  let threads: ThreadView[] = [];
  let conversation: Conversation | null = null;
  let creatingThread: Promise<string> | null = null;
  /** Runs sent from this tab: their endings are announced to screen readers. */
  const mine = new Set<string>();
  /**
   * Runs with a subscribe_run in flight on the current connection: a second one would only replay the same
   * events again. A reconnection voids them (their acks died with the old connection).
   */
  let subscribing = new Map<string, object>();

  const api = createApi(() => session?.token ?? null);
  const announce = (text: string) => {
    els.announcer.textContent = '';
    // A fresh text node after a tick, so the same sentence twice is still read out.
    setTimeout(() => (els.announcer.textContent = text), 50);
  };
  const setStatus = (text: string, state: 'online' | 'offline' | 'pending') => {
    els.connection.textContent = text;
    els.connection.dataset.state = state;
  };
  const showError = (err: unknown, what: string) => {
    const code = err instanceof ApiError ? err.code : 'INTERNAL';
    els.composerError.textContent = `${what}: ${code}. ${sentenceFor(code)}${err instanceof Error && err.message ? ` (${err.message})` : ''}`;
  };

  // ---- threads ----
  const threadList = createThreadList(
    byId<HTMLUListElement>('thread-list'),
    (id) => {
      void selectThread(id);
      if (matchMedia('(max-width: 760px)').matches) setThreadsOpen(false);
      composer.focus();
    },
    (id, label) => void deleteThread(id, label),
  );
  async function deleteThread(threadId: string, label: string): Promise<void> {
    if (!confirm(`Delete the conversation "${label}"? Its messages and answers are removed for good.`)) return;
    try {
      await api.deleteThread(threadId);
    } catch (err) {
      showError(err, 'Could not delete the conversation');
      return;
    }
    threads = threads.filter((t) => t.id !== threadId);
    if (conversation?.threadId === threadId) void selectThread(null);
    else renderThreads();
    announce('Conversation deleted.');
  }
  const renderThreads = () => threadList.render(threads, conversation?.threadId ?? null);
  const refreshThreads = coalesce(async () => {
    if (!session) return;
    threads = await api.threads();
    renderThreads();
  }, 500);
  const setThreadsOpen = (open: boolean) => {
    els.threadsToggle.setAttribute('aria-expanded', String(open));
    els.threadsPanel.classList.toggle('open', open);
  };
  els.threadsToggle.addEventListener('click', () => {
    const open = els.threadsToggle.getAttribute('aria-expanded') !== 'true';
    setThreadsOpen(open);
    // The list opens over the conversation: take the keyboard there, to the conversation shown now.
    if (open) (els.threadsPanel.querySelector<HTMLElement>('button[aria-current="true"]') ?? els.newThread).focus();
  });
  els.threadsPanel.addEventListener('keydown', (ev) => {
    // On a phone the list covers the conversation: Escape folds it and gives focus back to its button.
    if (ev.key === 'Escape' && els.threadsPanel.classList.contains('open')) {
      setThreadsOpen(false);
      els.threadsToggle.focus();
    }
  });
  els.newThread.addEventListener('click', () => {
    void selectThread(null);
    setThreadsOpen(false);
    composer.focus();
  });

  // ---- the shown conversation ----
  const markdown = createMarkdown();
  const nearBottom = () => els.scroller.scrollHeight - els.scroller.scrollTop - els.scroller.clientHeight < 120;
  function newConversation(threadId: string | null): Conversation {
    const conv = createConversation({
      list: els.turns,
      threadId,
      markdown,
      onStop: (run) => void stop(run),
      onShowSteps: (run) => void showSteps(conv, run),
      onChange: () => {
        if (stick) els.scroller.scrollTop = els.scroller.scrollHeight;
      },
    });
    let stick = true;
    els.scroller.onscroll = () => (stick = nearBottom());
    return conv;
  }

  async function subscribe(runId: string, afterSeq: number): Promise<void> {
    if (!conn || subscribing.has(runId)) return;
    const mark = {};
    const inFlight = subscribing;
    inFlight.set(runId, mark);
    try {
      // A long log is replayed in parts (each answer is size-capped): follow the cursor to its end.
      for (let after: number | null = afterSeq; after !== null; ) {
        const reply: { next_after_seq?: number | null } = await conn.request('subscribe_run', { run_id: runId, after_seq: after });
        after = reply.next_after_seq ?? null;
      }
    } catch (err) {
      // NO_ACK: the connection dropped; the reconnection subscribes again.
      if (err instanceof ApiError && (err.code === 'NOT_FOUND' || err.code === 'NO_ACK')) return;
      showError(err, 'Could not follow an answer');
    } finally {
      if (inFlight.get(runId) === mark) inFlight.delete(runId);
    }
  }

  /** A socket request, waiting out the server's rate limit instead of failing on it. */
  async function requestPatiently<E extends RequestName>(event: E, payload: PayloadOf<E>): Promise<ReplyOf<E>> {
    for (let attempt = 0; ; attempt++) {
      try {
        return await conn!.request(event, payload);
      } catch (err) {
        if (!(err instanceof ApiError && err.code === 'RATE_LIMITED' && attempt < 20)) throw err;
        await new Promise((r) => setTimeout(r, err.retryAfterMs ?? 1000));
      }
    }
  }

  /** Rebuilds a finished run of the history from its event log, the same way live events build it. */
  async function showSteps(conv: Conversation, run: RunState): Promise<void> {
    if (!run.runId) return;
    try {
      const events = await api.runEvents(run.runId);
      if (conversation === conv) conv.applyLog(run.runId, events);
    } catch (err) {
      showError(err, 'Could not load the steps');
    }
  }

  async function loadHistory(conv: Conversation): Promise<void> {
    if (!conn || !conv.threadId) return;
    const messages: MessageView[] = [];
    let after = conv.lastMessageId;
    // The history pages forward from the oldest message, so a long thread is read to its end: its newest
    // runs are the ones that matter.
    for (;;) {
      const reply = await requestPatiently('get_thread_history', { thread_id: conv.threadId, after, limit: HISTORY_PAGE });
      messages.push(...reply.messages);
      if (reply.next_after === null) break;
      after = reply.next_after;
    }
    if (conversation !== conv) return; // the user opened another conversation meanwhile
    for (const r of conv.mergeHistory(messages)) void subscribe(r.runId, r.afterSeq);
  }
  const refreshHistory = coalesce(async () => {
    if (conversation) await loadHistory(conversation).catch((err) => showError(err, 'Could not load the conversation'));
  }, 200);

  async function selectThread(threadId: string | null): Promise<void> {
    history.replaceState(null, '', threadId ? `#thread=${encodeURIComponent(threadId)}` : location.pathname);
    const conv = newConversation(threadId);
    conversation = conv;
    els.composerError.textContent = '';
    els.title.textContent = threadId ? (threads.find((t) => t.id === threadId)?.title ?? 'Conversation') : 'New conversation';
    if (!threadId) els.turns.appendChild(emptyState(meta.llm_configured));
    renderThreads();
    if (threadId) {
      try {
        await loadHistory(conv);
      } catch (err) {
        if (conversation === conv) showError(err, 'Could not load the conversation');
      }
    }
  }

  // ---- sending and stopping ----
  async function threadFor(text: string): Promise<string> {
    if (conversation?.threadId) return conversation.threadId;
    // One thread for a new conversation, even if two messages are sent before it exists.
    creatingThread ??= api.createThread(text.split('\n')[0].slice(0, 80)).then((t) => {
      threads = [t, ...threads.filter((x) => x.id !== t.id)];
      return t.id;
    });
    try {
      return await creatingThread;
    } finally {
      creatingThread = null;
    }
  }

  async function send(text: string, agent: string): Promise<void> {
    if (!conn || !conversation) return;
    els.composerError.textContent = '';
    // Refused here, the text stays: the server would answer PAYLOAD_TOO_LARGE, or past the transport's cap cut the
    // socket off before answering, and a message without an answer is not offered again (it may have arrived).
    const bytes = new TextEncoder().encode(JSON.stringify({ text })).length;
    if (bytes > meta.max_input_bytes) {
      composer.restore(text);
      els.composerError.textContent = `Not sent: PAYLOAD_TOO_LARGE. ${sentenceFor('PAYLOAD_TOO_LARGE')} (${bytes} bytes; at most ${meta.max_input_bytes})`;
      announce(`Not sent: PAYLOAD_TOO_LARGE. ${sentenceFor('PAYLOAD_TOO_LARGE')}`);
      return;
    }
    const conv = conversation;
    const correlationId = randomId();
    const run = conv.addPending(text, agent, correlationId);
    try {
      const threadId = await threadFor(text);
      if (!conv.threadId) {
        conv.adoptThread(threadId);
        history.replaceState(null, '', `#thread=${encodeURIComponent(threadId)}`);
        els.title.textContent = threads.find((t) => t.id === threadId)?.title ?? 'Conversation';
        renderThreads();
      }
      const ack = await conn.request('start_agent', { agent, input: text, thread_id: threadId, correlation_id: correlationId });
      mine.add(ack.run_id);
      conv.bind(run, ack.run_id, ack.thread_id);
      refreshThreads();
    } catch (err) {
      const code = err instanceof ApiError ? err.code : 'INTERNAL';
      conv.refuse(run, { code, message: err instanceof Error ? err.message : String(err) });
      // Refused means nothing was accepted: offer the text again. Without an ack it may still arrive.
      if (code !== 'NO_ACK') composer.restore(text);
      announce(`Not sent: ${code}. ${sentenceFor(code)}`);
    }
  }

  async function stop(run: RunState): Promise<void> {
    if (!conn || !run.runId || run.stopping) return;
    run.stopping = true;
    conversation?.refresh(run);
    try {
      await conn.request('stop_agent', { run_id: run.runId });
    } catch (err) {
      run.stopping = false;
      conversation?.refresh(run);
      showError(err, 'Could not stop');
    }
  }

  const composer = setUpComposer((text, agent) => void send(text, agent));

  // ---- events ----
  function onEnvelope(e: Envelope): void {
    const conv = conversation;
    if (!conv) return;
    const result = conv.onEnvelope(e);
    if (result === 'other-thread') {
      if (threads.some((t) => t.id === e.thread_id)) threadList.markActivity(e.thread_id);
      else refreshThreads();
      return;
    }
    if (result === 'gap') void subscribe(e.run_id, conv.lastSeqOf(e.run_id));
    if (result !== 'applied') return;
    if (conv.missingUserText()) refreshHistory();
    if (e.type === 'agent_completed') {
      refreshThreads();
      if (mine.delete(e.run_id)) {
        const p = e.payload as { status?: string; error?: { code?: string } };
        if (p.status === 'completed') announce('The answer is complete.');
        else if (p.status === 'cancelled') announce('The answer was stopped.');
        else announce(`The answer failed: ${p.error?.code ?? 'INTERNAL'}. ${sentenceFor(p.error?.code ?? 'INTERNAL')}`);
      }
    }
  }

  async function onTokenExpiring(): Promise<void> {
    if (!session || !conn) return;
    if (session.via !== 'dev' || !meta.dev_login) {
      els.composerError.textContent = 'Your token expires in a minute. Sign out and sign in with a new one to keep going.';
      return;
    }
    try {
      const { token } = await api.devLogin(session.userId);
      await conn.request('refresh_token', { token });
      session = { ...session, token };
      store.save(session);
    } catch (err) {
      showError(err, 'Could not renew the session');
    }
  }

  function connect(): void {
    setStatus('Connecting…', 'pending');
    conn = openConnection(() => session?.token ?? '', {
      connected(again) {
        setStatus('Connected', 'online');
        if (!again) {
          void selectThread(threadInUrl());
          return;
        }
        // Back after a drop or a server restart: take every open run up from its last seq, then catch up
        // on messages and runs that started elsewhere meanwhile.
        subscribing = new Map();
        for (const r of conversation?.openRuns() ?? []) void subscribe(r.runId, r.afterSeq);
        refreshHistory();
        refreshThreads();
      },
      disconnected() {
        setStatus('Connection lost. Reconnecting…', 'offline');
      },
      reconnecting(attempt) {
        setStatus(`Reconnecting (attempt ${attempt})…`, 'offline');
      },
      refused(error) {
        if (error.code === 'UNAUTHORIZED') signOut(`Your session ended: ${error.message}. Sign in again.`);
        else setStatus(`Refused: ${error.code}. ${sentenceFor(error.code)} Retrying…`, 'offline');
      },
      envelope: onEnvelope,
      closing(error, retryAfterMs) {
        setStatus(`Disconnected by the server: ${error.message.split(':')[0]}. Reconnecting in ${Math.ceil(retryAfterMs / 1000)} s…`, 'offline');
      },
      resyncRequired(runId) {
        void subscribe(runId, conversation?.lastSeqOf(runId) ?? 0);
      },
      tokenExpiring: () => void onTokenExpiring(),
      serverShutdown() {
        setStatus('The server is restarting. Reconnecting…', 'offline');
      },
    });
  }

  // ---- session ----
  let signInView: ReturnType<typeof setUpSignIn> | null = null;

  async function enter(s: Session): Promise<void> {
    session = s;
    store.save(s);
    signInView?.hide();
    els.chat.hidden = false;
    els.whoami.textContent = `Signed in as ${s.userId}`;
    els.signOut.hidden = false;
    els.notice.hidden = meta.llm_configured;
    composer.focus();
    try {
      const [agents, list] = await Promise.all([api.agents(), api.threads()]);
      threads = list;
      renderThreads();
      composer.setAgents(agents, meta.llm_configured ? 'llm' : 'echo');
    } catch (err) {
      if (err instanceof ApiError && err.code === 'UNAUTHORIZED') return signOut(`Your session ended: ${err.message}. Sign in again.`);
      showError(err, 'Could not load your conversations');
    }
    connect();
  }

  function signOut(message?: string): void {
    conn?.close();
    conn = null;
    session = null;
    conversation = null;
    threads = [];
    store.clear();
    els.turns.replaceChildren();
    threadList.render([], null);
    els.chat.hidden = true;
    els.whoami.textContent = '';
    els.signOut.hidden = true;
    setStatus('Signed out', 'offline');
    history.replaceState(null, '', location.pathname);
    signInView?.show(message);
  }
  els.signOut.addEventListener('click', () => signOut());
  // The conversation lives in the URL: back, forward or an edited address open the one it names.
  window.addEventListener('hashchange', () => {
    const id = threadInUrl();
    if (conn && id !== (conversation?.threadId ?? null)) void selectThread(id);
  });

  void (async () => {
    try {
      meta = await api.meta();
    } catch (err) {
      const code = err instanceof ApiError ? err.code : 'NETWORK';
      setStatus(`The server cannot be reached (${code}). Reload to try again.`, 'offline');
      return;
    }
    signInView = setUpSignIn({ devLogin: meta.dev_login, api, tryToken: async (token) => void (await createApi(() => token).threads()), signedIn: (s) => void enter(s) });
    const saved = store.load();
    if (saved) void enter(saved);
    else {
      setStatus('Signed out', 'offline');
      signInView.show();
    }
  })();
}

startChatPage();
