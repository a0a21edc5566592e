/**
 * One streamed model request: text deltas go to onText as they arrive, tool-call deltas are assembled
 * by their index (id and name arrive once, arguments in pieces), reasoning deltas (`reasoning_content`
 * from vLLM/llama.cpp/DeepSeek, `reasoning` from Ollama/OpenRouter) go to onReasoning.
 */
import { randomUUID } from 'node:crypto';
import type OpenAI from 'openai';
import type { ChatCompletionCreateParamsStreaming } from 'openai/resources/chat/completions';
import type { ToolCallRequest } from './tool-runner.js';

export interface TurnResult {
  text: string;
  toolCalls: ToolCallRequest[];
  finishReason: string | null;
}

export async function streamTurn(
  client: OpenAI,
  request: ChatCompletionCreateParamsStreaming,
  deps: { signal: AbortSignal; onText: (text: string) => void; onReasoning: (text: string) => void },
): Promise<TurnResult> {
  const stream = await client.chat.completions.create(request, { signal: deps.signal });
  let text = '';
  let finishReason: string | null = null;
  const calls: { id: string; name: string; arguments: string }[] = [];
  // Leaving this loop early (a throw from onText) makes the library abort the HTTP request.
  for await (const chunk of stream) {
    const choice = chunk.choices?.[0];
    if (!choice) continue; // usage-only chunks
    const delta = (choice.delta ?? {}) as typeof choice.delta & { reasoning_content?: unknown; reasoning?: unknown };
    const reasoning = typeof delta.reasoning_content === 'string' ? delta.reasoning_content : typeof delta.reasoning === 'string' ? delta.reasoning : '';
    if (reasoning) deps.onReasoning(reasoning);
    if (typeof delta.content === 'string' && delta.content) {
      text += delta.content;
      deps.onText(delta.content);
    }
    for (const piece of delta.tool_calls ?? []) {
      // Some servers omit `index` and send each call whole: a new id then means a new call.
      const index = typeof piece.index === 'number' ? piece.index : piece.id ? calls.length : Math.max(calls.length - 1, 0);
      const call = (calls[index] ??= { id: '', name: '', arguments: '' });
      if (piece.id && !call.id) call.id = piece.id;
      if (piece.function?.name && !call.name) call.name = piece.function.name;
      if (piece.function?.arguments) call.arguments += piece.function.arguments;
    }
    if (choice.finish_reason) finishReason = choice.finish_reason;
  }
  const toolCalls = calls
    .filter((c) => c !== undefined)
    // A call without an id could not be answered; one is made up so the conversation stays well-formed.
    .map((c) => ({ id: c.id || `call_${randomUUID()}`, name: c.name, arguments: c.arguments }));
  return { text, toolCalls, finishReason };
}
