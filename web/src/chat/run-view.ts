/**
 * The DOM of one turn: the user's message, then the agent's answer as it streams, its steps (thinking and
 * tool calls as collapsible <details> with their results and times), its state, a Stop button while it is
 * open, and a failure's code with a sentence. Updated in place, so an open step or a focused button is
 * never rebuilt under the user.
 */
import { h, replace } from '../shared/dom';
import { sentenceFor } from '../shared/error-text';
import { createAnswerView } from './answer-view';
import type { Markdown } from './markdown';
import { isOpen, type RunState, type Segment } from './run-state';

export interface TurnView {
  el: HTMLLIElement;
  update(run: RunState): void;
}

const seconds = (ms: number) => (ms < 1000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(1)} s`);
const json = (value: unknown) => (typeof value === 'string' ? value : JSON.stringify(value, null, 2) ?? String(value));

function phaseText(run: RunState): string {
  switch (run.phase) {
    case 'sending':
      return 'Sending…';
    case 'loading':
      return 'Loading…';
    case 'queued':
      return run.queuePosition ? `Waiting for a worker (position ${run.queuePosition})…` : 'Waiting for a worker…';
    case 'running':
      return run.stopping ? 'Stopping…' : 'Answering…';
    case 'completed':
      return run.executionMs !== null ? `Answered in ${seconds(run.executionMs)}` : 'Answered';
    case 'cancelled':
      return 'Stopped';
    case 'timeout':
      return 'Timed out';
    case 'failed':
      return 'Failed';
  }
}

/** One step's element, created once and refreshed when its segment changes. */
function segmentView(seg: Segment, md: Markdown): { el: HTMLElement; update(s: Segment): void } {
  if (seg.kind === 'text') {
    const answer = createAnswerView(md, { class: 'answer-text' });
    return { el: answer.el, update: (s) => s.kind === 'text' && answer.update(s.text) };
  }
  if (seg.kind === 'notice') {
    const el = h('p', { class: 'notice' });
    return { el, update: (s) => s.kind === 'notice' && (el.textContent = s.text) };
  }
  const summary = h('summary');
  const body = h('div', { class: 'step-body' });
  const el = h('details', { class: `step ${seg.kind}` }, summary, body);
  return {
    el,
    update(s) {
      if (s.kind === 'thinking') {
        replace(summary, h('span', { class: 'step-label', text: 'Thinking' }), h('span', { class: 'step-time', text: `at +${seconds(s.atMs)}` }));
        replace(body, h('p', { class: 'reasoning', text: s.text }));
      } else if (s.kind === 'tool') {
        el.dataset.status = s.status;
        const state = s.status === 'running' ? 'running…' : s.status === 'success' ? 'done' : 'error';
        replace(
          summary,
          h('span', { class: 'step-label', text: `Tool: ${s.name}` }),
          h('span', { class: `tool-state ${s.status}`, text: state }),
          h('span', { class: 'step-time', text: s.ms !== undefined ? `${seconds(s.ms)}, at +${seconds(s.atMs)}` : `at +${seconds(s.atMs)}` }),
        );
        replace(
          body,
          h('h4', { text: 'Arguments' }),
          h('pre', { class: 'tool-args', text: json(s.parameters) }),
          h('h4', { text: 'Result' }),
          s.status === 'running' ? h('p', { class: 'muted', text: 'Waiting for the tool…' }) : h('pre', { class: 'tool-result', text: json(s.results) }),
        );
      }
    },
  };
}

export function createTurnView(md: Markdown, handlers: { onStop(run: RunState): void; onShowSteps(run: RunState): void }): TurnView {
  const userText = h('p', { class: 'user-text' });
  const agentLabel = h('span', { class: 'agent-name' });
  const status = h('span', { class: 'run-status', tabindex: -1 });
  let current: RunState | null = null;
  const stop = h('button', { type: 'button', class: 'stop', 'aria-label': 'Stop this answer', text: 'Stop', onclick: () => current && handlers.onStop(current) });
  const showSteps = h('button', { type: 'button', class: 'quiet show-steps', 'aria-label': 'Show the steps of this answer', text: 'Show steps', onclick: () => current && handlers.onShowSteps(current) });
  const steps = h('div', { class: 'run-body' });
  const storedAnswer = createAnswerView(md, { class: 'answer-text stored' });
  const interrupted = h('p', { class: 'answer-note', text: '[interrupted]', hidden: true });
  const stored = h('div', { hidden: true }, storedAnswer.el, interrupted);
  const result = h('pre', { class: 'run-result', hidden: true });
  const failure = h('div', { class: 'failure', hidden: true });
  const el = h(
    'li',
    { class: 'turn' },
    h('div', { class: 'msg user' }, h('span', { class: 'who', text: 'You' }), userText),
    h('section', { class: 'msg assistant', 'aria-label': 'Answer' }, h('div', { class: 'run-meta' }, agentLabel, status, stop, showSteps), steps, stored, result, failure),
  );
  const rendered: { view: ReturnType<typeof segmentView>; rev: number; seg: Segment }[] = [];

  return {
    el,
    update(run) {
      current = run;
      el.dataset.phase = run.phase;
      el.dataset.lastSeq = String(run.lastSeq);
      if (run.runId) el.dataset.runId = run.runId;
      userText.textContent = run.userText ?? '…';
      agentLabel.textContent = run.agent || 'Assistant';
      status.textContent = phaseText(run);
      stop.hidden = !isOpen(run);
      stop.disabled = !run.runId || run.stopping;

      // A restart replaces the segments: rebuild from scratch when the list no longer starts the same way.
      if (rendered.some((r, i) => run.segments[i] !== r.seg)) {
        rendered.splice(0).forEach((r) => r.view.el.remove());
      }
      run.segments.forEach((seg, i) => {
        let r = rendered[i];
        if (!r) {
          r = { view: segmentView(seg, md), rev: -1, seg };
          rendered.push(r);
          steps.appendChild(r.view.el);
        }
        if (r.rev !== seg.rev || r.rev === -1) {
          r.view.update(seg);
          r.rev = seg.rev;
        }
      });

      // Before any event is applied, a run from the history shows its stored answer.
      const showStored = run.lastSeq === 0 && run.stored !== null;
      stored.hidden = !showStored;
      // A finished run of the history shows its stored answer; its steps are one click (and request) away.
      const hadFocus = document.activeElement === showSteps;
      showSteps.hidden = !(showStored && run.runId);
      // The button goes away once the steps are there: keyboard focus moves to them instead of the page top.
      if (hadFocus && showSteps.hidden) (steps.querySelector('summary') ?? status).focus();
      storedAnswer.update(showStored ? run.stored!.content : '');
      interrupted.hidden = !(showStored && run.stored!.status === 'interrupted');

      const structured = run.phase === 'completed' && run.final !== undefined && typeof run.final !== 'string';
      result.hidden = !structured;
      if (structured) result.textContent = json(run.final);

      const failed = run.error !== null && run.phase !== 'cancelled';
      failure.hidden = !failed;
      if (failed) {
        replace(
          failure,
          h('strong', { class: 'error-code', text: run.error!.code }),
          ' ',
          h('span', { class: 'error-sentence', text: sentenceFor(run.error!.code) }),
          run.error!.message ? h('span', { class: 'error-detail', text: ` (${run.error!.message})` }) : null,
        );
      }
    },
  };
}
