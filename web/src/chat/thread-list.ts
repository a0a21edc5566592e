/** The user's conversations: one button each, the selected one marked with aria-current, and a button to delete it. */
import { h, replace } from '../shared/dom';
import { type ThreadView } from '../../../protocol/views';

export interface ThreadList {
  render(threads: ThreadView[], selected: string | null): void;
  /** Marks a conversation that changed while another one is shown. */
  markActivity(threadId: string): void;
}

function label(t: ThreadView): string {
  return t.title?.trim() || `Conversation of ${new Date(t.created_at).toLocaleString()}`;
}

export function createThreadList(list: HTMLUListElement, onSelect: (threadId: string) => void, onDelete: (threadId: string, label: string) => void): ThreadList {
  const active = new Set<string>();
  return {
    render(threads, selected) {
      if (selected) active.delete(selected);
      // A refresh rebuilds the list: keep keyboard focus on the same conversation rather than drop it.
      const focused = list.contains(document.activeElement) ? (document.activeElement as HTMLElement).dataset.threadId : undefined;
      if (threads.length === 0) {
        replace(list, h('li', { class: 'muted', text: 'No conversations yet.' }));
        return;
      }
      replace(
        list,
        ...threads.map((t) =>
          h(
            'li',
            { class: 'thread-row' },
            h(
              'button',
              {
                type: 'button',
                class: active.has(t.id) ? 'thread has-activity' : 'thread',
                'data-thread-id': t.id,
                'aria-current': t.id === selected ? 'true' : undefined,
                onclick: () => onSelect(t.id),
              },
              h('span', { class: 'thread-title', text: label(t) }),
              h('time', { datetime: t.updated_at, text: new Date(t.updated_at).toLocaleString([], { dateStyle: 'short', timeStyle: 'short' }) }),
              active.has(t.id) ? h('span', { class: 'visually-hidden', text: ' (new activity)' }) : null,
            ),
            h('button', { type: 'button', class: 'thread-delete', 'aria-label': `Delete conversation ${label(t)}`, title: 'Delete this conversation', text: '×', onclick: () => onDelete(t.id, label(t)) }),
          ),
        ),
      );
      if (focused) list.querySelector<HTMLElement>(`button[data-thread-id="${CSS.escape(focused)}"]`)?.focus();
    },
    markActivity(threadId) {
      active.add(threadId);
      const button = list.querySelector(`button[data-thread-id="${CSS.escape(threadId)}"]`);
      if (button && !button.classList.contains('has-activity')) {
        button.classList.add('has-activity');
        button.appendChild(h('span', { class: 'visually-hidden', text: ' (new activity)' }));
      }
    },
  };
}
