/**
 * The conversation context of a run: the thread's messages before the run's own user message, the last
 * `maxMessages` of them, as Chat Completions messages. Only user and assistant text is replayed: tool
 * exchanges of earlier runs are not stored, so the context never holds an unanswered tool call.
 */
import type { ChatCompletionMessageParam } from 'openai/resources/chat/completions';
import type { MessageView, ScopedDb } from '../agent-contract.js';

/** ctx.db pages hold at most 100 messages (and at most 1 MiB of content: a shorter page is not the end). */
const PAGE = 100;
/** Messages kept beyond the bound while paging, to find the run's own message among concurrent runs'. */
const SLACK = 20;
export const INTERRUPTED_MARK = '[this answer was interrupted]';

export async function loadContext(db: ScopedDb, inputText: string, maxMessages: number): Promise<ChatCompletionMessageParam[]> {
  if (maxMessages <= 0) return [];
  // ctx.db reads forward only, so the thread is paged through keeping a bounded tail.
  let tail: MessageView[] = [];
  for (let afterId = 0; ; ) {
    const page = await db.messages.list({ limit: PAGE, afterId });
    if (page.length === 0) break;
    tail = tail.concat(page).slice(-(maxMessages + SLACK));
    afterId = page[page.length - 1].id;
  }
  // The run's user message is stored before the run starts: the last user message with the input's text.
  // Anything after it belongs to runs started later on the same thread.
  const own = findLastIndex(tail, (m) => m.role === 'user' && m.content === inputText);
  const earlier = own >= 0 ? tail.slice(0, own) : tail;
  return earlier.flatMap(toChatMessage).slice(-maxMessages);
}

function toChatMessage(m: MessageView): ChatCompletionMessageParam[] {
  if (!m.content) return [];
  if (m.role === 'user') return [{ role: 'user', content: m.content }];
  if (m.role === 'assistant') {
    // The model should know an answer was cut short rather than take it as complete.
    return [{ role: 'assistant', content: m.status === 'interrupted' ? `${m.content}\n\n${INTERRUPTED_MARK}` : m.content }];
  }
  return []; // stored tool rows carry no tool_call_id, so they cannot be replayed validly
}

function findLastIndex<T>(items: T[], test: (item: T) => boolean): number {
  for (let i = items.length - 1; i >= 0; i--) if (test(items[i])) return i;
  return -1;
}
