/**
 * The tool-calling loop: ask the model (streaming), run the tools it asks for, hand their results back,
 * until it answers without tools or the turn budget is spent (the last turn is sent with tool_choice
 * "none"). The answer is every text token of every turn, exactly what partial_result events carried.
 */
import type OpenAI from 'openai';
import type { ChatCompletionMessageParam } from 'openai/resources/chat/completions';
import { APIConnectionError, APIError, APIUserAbortError } from 'openai';
import type { AgentLogger, UserExecutionContext } from '../agent-contract.js';
import { createCoalescer } from './coalescer.js';
import { streamTurn } from './stream-turn.js';
import { runToolCall } from './tool-runner.js';
import type { ToolSet } from './tool-set.js';
import type { ChatResult } from './types.js';

/** Tool calls run per turn; further ones are answered with an error without running them. */
const MAX_CALLS_PER_TURN = 16;
const TEXT_FLUSH = { maxChars: 200, maxDelayMs: 50 };
const REASONING_FLUSH = { maxChars: 1000, maxDelayMs: 250 };
const TURN_SEPARATOR = '\n\n';

export interface ChatLoopInput {
  client: OpenAI;
  model: string;
  baseUrl: string;
  messages: ChatCompletionMessageParam[];
  tools: ToolSet;
  maxTurns: number;
  emit: UserExecutionContext['emit'];
  signal: AbortSignal;
  /** The run's log: where a model error's address, cause and hint go (the operator reads it, not the end user). */
  log: AgentLogger;
}

export async function runChatLoop(input: ChatLoopInput): Promise<ChatResult> {
  const { tools, emit, signal } = input;
  const messages = [...input.messages];
  let answer = '';
  let toolCalls = 0;
  const text = createCoalescer((t) => emit('partial_result', { text: t }), TEXT_FLUSH);
  const reasoning = createCoalescer((t) => emit('agent_thinking', { reasoning: t }), REASONING_FLUSH);
  // On stop the run ends at once: hand over the text streamed so far while the context still accepts it.
  const onStop = () => {
    try {
      text.flush();
      reasoning.flush();
    } catch {
      // released already
    }
  };
  signal.addEventListener('abort', onStop, { once: true });

  try {
    for (let turn = 1; ; turn++) {
      let separated = answer === '';
      const result = await requestTurn(input, messages, turn === input.maxTurns, {
        onText: (t) => {
          // Text of a later turn starts a new paragraph, in the stream and in the answer alike.
          if (!separated) {
            separated = true;
            if (!/\s$/.test(answer)) {
              answer += TURN_SEPARATOR;
              text.push(TURN_SEPARATOR);
            }
          }
          answer += t;
          text.push(t);
        },
        onReasoning: (t) => reasoning.push(t),
      });
      text.flush();
      reasoning.flush();
      if (result.toolCalls.length === 0) return { text: answer, turns: turn, toolCalls };
      if (turn >= input.maxTurns) {
        throw new Error(`the model still asked for tools after ${input.maxTurns} turns, although the last turn was sent with tool_choice "none"`);
      }
      toolCalls += result.toolCalls.length;
      messages.push({
        role: 'assistant',
        content: result.text || null,
        tool_calls: result.toolCalls.map((c) => ({ id: c.id, type: 'function', function: { name: c.name, arguments: c.arguments || '{}' } })),
      });
      // Sequential on purpose: events stay in a readable order and each call gets its whole timeout.
      // Every call is answered, or the next request would be an invalid conversation.
      for (const [i, call] of result.toolCalls.entries()) {
        const content =
          i < MAX_CALLS_PER_TURN
            ? await runToolCall(call, tools, { emit, signal })
            : JSON.stringify({ error: `not run: at most ${MAX_CALLS_PER_TURN} tool calls per turn` });
        messages.push({ role: 'tool', tool_call_id: call.id, content });
      }
    }
  } finally {
    signal.removeEventListener('abort', onStop);
    text.dispose();
    reasoning.dispose();
  }
}

async function requestTurn(
  input: ChatLoopInput,
  messages: ChatCompletionMessageParam[],
  lastTurn: boolean,
  sinks: { onText: (t: string) => void; onReasoning: (t: string) => void },
) {
  const withTools = input.tools.size > 0;
  try {
    return await streamTurn(
      input.client,
      {
        model: input.model,
        messages,
        stream: true,
        // tool_choice is only sent when it must be "none": "auto" is the default with tools, and some servers
        // (vLLM without --enable-auto-tool-choice) refuse an explicit "auto".
        ...(withTools ? { tools: input.tools.specs(), ...(lastTurn ? { tool_choice: 'none' as const } : {}) } : {}),
      },
      { signal: input.signal, ...sinks },
    );
  } catch (err) {
    throw modelError(err, input.baseUrl, input.log);
  }
}

/**
 * The library's errors, reworded for the person reading agent_completed.error.message: what went wrong, not where.
 * The endpoint's address, a connection's cause and the operator's hint (check LLM_API_KEY...) go to the run's log
 * line instead: an end user had read `cannot reach the model at http://10.0.0.5:11434/v1: ... ECONNREFUSED` (helper-102).
 * A refusal of the credentials (401, 403) keeps the endpoint's own text in the log too (OpenAI's names the key's
 * last characters); other answers keep it, since it is about the request (a context too long, a policy).
 */
function modelError(err: unknown, baseUrl: string, log: AgentLogger): unknown {
  if (err instanceof APIUserAbortError) return err; // the run was stopped; its outcome is decided already
  if (err instanceof APIConnectionError) {
    const cause = (err as { cause?: { message?: unknown; code?: unknown } }).cause;
    const detail = [cause?.code, cause?.message].filter((x) => typeof x === 'string' && x).join(' ');
    log.warn('cannot reach the model endpoint', { endpoint: baseUrl, error: err.message, ...(detail ? { cause: detail } : {}) });
    return new Error('cannot reach the model endpoint; try again later');
  }
  if (err instanceof APIError) {
    if (err.status === undefined) return new Error(`the model endpoint reported an error: ${err.message}`);
    const detail = err.message.startsWith(`${err.status} `) ? err.message.slice(String(err.status).length + 1) : err.message;
    log.warn('the model endpoint answered an error', { endpoint: baseUrl, status: err.status, detail, ...(HINTS[err.status] ? { hint: HINTS[err.status] } : {}) });
    if (err.status === 401 || err.status === 403) return new Error(`the model endpoint refused this server's credentials (HTTP ${err.status})`);
    return new Error(`the model endpoint answered HTTP ${err.status}: ${detail}`);
  }
  return err;
}

const HINTS: Record<number, string> = {
  401: 'check LLM_API_KEY',
  403: 'check LLM_API_KEY',
  404: 'check LLM_MODEL, and that LLM_BASE_URL is the API root, usually ending in /v1',
};
