/**
 * The turns of one thread: runs sent from this tab (matched to their run by the ack, or earlier by the
 * correlation id in message_received), runs started elsewhere (another tab, another device) as their
 * events arrive, and the stored history. Decides which runs must be (re)subscribed and from which seq.
 */
import { h, replace } from '../shared/dom';
import { type AnyRunEventEnvelope as Envelope } from '../../../protocol/events';
import { type MessageView } from '../../../protocol/views';
import { applyEnvelope, isOpen, newRun, type ApplyResult, type RunState } from './run-state';
import type { Markdown } from './markdown';
import { createTurnView, type TurnView } from './run-view';

interface Turn {
  run: RunState;
  view: TurnView;
}

/** Unanswered runs of the history this page replays from the log at most (older ones keep their text). */
const MAX_REPLAYED_FROM_HISTORY = 10;

export interface Conversation {
  readonly threadId: string | null;
  /** A turn for a message this tab is sending now. */
  addPending(text: string, agent: string, correlationId: string): RunState;
  /** A new conversation got its thread. */
  adoptThread(threadId: string): void;
  /** The ack named the run (and, for a new conversation, its thread). */
  bind(run: RunState, runId: string, threadId: string): void;
  /** The request was refused before a run existed. */
  refuse(run: RunState, error: { code: string; message: string }): void;
  /** 'other-thread' when the event belongs to a thread this view is not showing. */
  onEnvelope(e: Envelope): ApplyResult | 'other-thread';
  /** Applies a run's logged events at once (one render, so the view sees the finished steps). */
  applyLog(runId: string, events: Envelope[]): void;
  /** Merges stored messages; returns the runs to replay from the log. */
  mergeHistory(messages: MessageView[]): { runId: string; afterSeq: number }[];
  /** Runs still open here, with the last seq applied: what a reconnect must subscribe again. */
  openRuns(): { runId: string; afterSeq: number }[];
  lastSeqOf(runId: string): number;
  /** A turn whose user text is still unknown (started in another tab): the history will say it. */
  missingUserText(): boolean;
  readonly lastMessageId: number;
  refresh(run: RunState): void;
}

export function createConversation(deps: {
  list: HTMLOListElement;
  threadId: string | null;
  /** Renders the answers' Markdown. */
  markdown: Markdown;
  onStop(run: RunState): void;
  onShowSteps(run: RunState): void;
  onChange(): void;
}): Conversation {
  let threadId = deps.threadId;
  let lastMessageId = 0;
  const turns: Turn[] = [];
  const byRun = new Map<string, Turn>();
  const byCorrelation = new Map<string, Turn>();

  replace(deps.list);

  function add(run: RunState): Turn {
    const view = createTurnView(deps.markdown, { onStop: deps.onStop, onShowSteps: deps.onShowSteps });
    const turn = { run, view };
    turns.push(turn);
    if (run.runId) byRun.set(run.runId, turn);
    if (run.correlationId) byCorrelation.set(run.correlationId, turn);
    deps.list.querySelector(':scope > .empty')?.remove();
    deps.list.appendChild(view.el);
    view.update(run);
    return turn;
  }

  function remove(turn: Turn): void {
    turns.splice(turns.indexOf(turn), 1);
    turn.view.el.remove();
  }

  function render(turn: Turn): void {
    turn.view.update(turn.run);
    deps.onChange();
  }

  /** Ties a turn of this tab to its run; if the history already made a turn for that run, keeps one. */
  function attach(turn: Turn, runId: string): Turn {
    const existing = byRun.get(runId);
    if (existing && existing !== turn) {
      existing.run.userText ??= turn.run.userText;
      existing.run.correlationId ??= turn.run.correlationId;
      if (turn.run.correlationId) byCorrelation.set(turn.run.correlationId, existing);
      remove(turn);
      return existing;
    }
    turn.run.runId = runId;
    byRun.set(runId, turn);
    return turn;
  }

  return {
    get threadId() {
      return threadId;
    },
    get lastMessageId() {
      return lastMessageId;
    },
    addPending(text, agent, correlationId) {
      return add(newRun({ agent, userText: text, correlationId, phase: 'sending' })).run;
    },
    adoptThread(tid) {
      threadId ??= tid;
    },
    bind(run, runId, tid) {
      threadId ??= tid;
      const turn = turns.find((t) => t.run === run) ?? (run.correlationId ? byCorrelation.get(run.correlationId) : undefined);
      if (!turn) return;
      render(attach(turn, runId));
    },
    refuse(run, error) {
      run.phase = 'failed';
      run.error = error;
      run.rev++;
      const turn = turns.find((t) => t.run === run);
      if (turn) render(turn);
    },
    onEnvelope(e) {
      let turn = byRun.get(e.run_id);
      if (!turn && e.type === 'message_received' && typeof e.payload.correlation_id === 'string') {
        // Our own message, whose ack has not arrived yet.
        const mine = byCorrelation.get(e.payload.correlation_id);
        if (mine && (mine.run.runId === null || mine.run.runId === e.run_id)) {
          threadId ??= e.thread_id;
          turn = attach(mine, e.run_id);
        }
      }
      if (!turn) {
        if (e.thread_id !== threadId) return 'other-thread';
        // A run of this thread started elsewhere: shown as it streams; the history fills in its text.
        turn = add(newRun({ agent: e.agent_name, runId: e.run_id }));
      }
      turn.run.agent ||= e.agent_name;
      const result = applyEnvelope(turn.run, e);
      if (result === 'applied') render(turn);
      return result;
    },
    applyLog(runId, events) {
      const turn = byRun.get(runId);
      if (!turn) return;
      for (const e of events) {
        turn.run.agent ||= e.agent_name;
        applyEnvelope(turn.run, e);
      }
      render(turn);
    },
    mergeHistory(messages) {
      const created: Turn[] = [];
      for (const m of messages) {
        lastMessageId = Math.max(lastMessageId, m.id);
        if (!m.run_id || m.role === 'tool') continue;
        let turn = byRun.get(m.run_id);
        if (!turn) {
          if (m.role !== 'user') continue;
          turn = add(newRun({ agent: '', runId: m.run_id, userText: m.content }));
          created.push(turn);
        }
        if (m.role === 'user') turn.run.userText ??= m.content;
        else if (turn.run.lastSeq === 0) {
          turn.run.stored = { content: m.content, status: m.status };
          turn.run.phase = m.status === 'complete' ? 'completed' : 'cancelled';
        }
        turn.run.rev++;
        turn.view.update(turn.run);
      }
      // A stored run without its answer is still going, or ended without text (a failure): its log says which.
      const unanswered = created.filter((t) => t.run.stored === null);
      unanswered.slice(0, -MAX_REPLAYED_FROM_HISTORY).forEach((t) => {
        t.run.phase = 'completed';
        t.run.stored = { content: 'No answer was stored for this message.', status: 'complete' };
        t.view.update(t.run);
      });
      deps.onChange();
      return unanswered.slice(-MAX_REPLAYED_FROM_HISTORY).map((t) => ({ runId: t.run.runId!, afterSeq: t.run.lastSeq }));
    },
    openRuns() {
      return turns.filter((t) => t.run.runId && isOpen(t.run)).map((t) => ({ runId: t.run.runId!, afterSeq: t.run.lastSeq }));
    },
    lastSeqOf(runId) {
      return byRun.get(runId)?.run.lastSeq ?? 0;
    },
    missingUserText() {
      return turns.some((t) => t.run.userText === null);
    },
    refresh(run) {
      const turn = turns.find((t) => t.run === run);
      if (turn) render(turn);
    },
  };
}

/** The placeholder shown when no conversation is selected. */
export function emptyState(llmConfigured: boolean): HTMLElement {
  return h(
    'li',
    { class: 'empty' },
    h('p', { text: 'Write a message below to start a conversation.' }),
    llmConfigured ? null : h('p', { class: 'muted', text: 'Tip: the echo agent answers with your own words; it needs no model.' }),
  );
}
