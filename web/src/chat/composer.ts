/**
 * The composer: an agent picker and a message box. Enter sends, Shift+Enter starts a new line; after a
 * send the box is empty and focused again. It never locks while an answer streams (a second message
 * waits for the first on the server), so a failure can never leave it unusable.
 */
import { byId, h, replace } from '../shared/dom';
import { type AgentInfo } from '../../../protocol/views';

export interface Composer {
  setAgents(agents: AgentInfo[], preferred: string): void;
  focus(): void;
  /** Puts text back (a message the server refused) unless the user typed something new meanwhile. */
  restore(text: string): void;
}

export function setUpComposer(onSend: (text: string, agent: string) => void): Composer {
  const form = byId<HTMLFormElement>('composer');
  const input = byId<HTMLTextAreaElement>('composer-input');
  const agent = byId<HTMLSelectElement>('agent');
  const hint = byId('agent-hint');
  let descriptions = new Map<string, string>();

  const showHint = () => (hint.textContent = descriptions.get(agent.value) ?? '');
  agent.addEventListener('change', showHint);

  const send = () => {
    const text = input.value.trim();
    if (!text) {
      input.focus();
      return;
    }
    input.value = '';
    input.focus();
    onSend(text, agent.value);
  };
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    send();
  });
  input.addEventListener('keydown', (ev) => {
    if (ev.key === 'Enter' && !ev.shiftKey && !ev.isComposing) {
      ev.preventDefault();
      send();
    }
  });

  return {
    setAgents(agents, preferred) {
      const previous = agent.value;
      descriptions = new Map(agents.map((a) => [a.name, a.description ?? '']));
      replace(agent, ...agents.map((a) => h('option', { value: a.name, text: a.name })));
      const pick = [previous, preferred].find((n) => n && descriptions.has(n));
      if (pick) agent.value = pick;
      showHint();
    },
    focus() {
      input.focus();
    },
    restore(text) {
      if (!input.value.trim()) input.value = text;
    },
  };
}
