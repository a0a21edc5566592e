/**
 * Built-in `llm`: a chat assistant on the operator's OpenAI-compatible model (LLM_BASE_URL, LLM_MODEL),
 * with the thread's earlier messages as context and the built-in tools. All of the work is ctx.llm.chat,
 * the same entry point a plugin agent uses.
 */
import type { Agent, TextInput, UserExecutionContext } from '../agent-contract.js';

const SYSTEM_PROMPT = [
  'You are a helpful assistant in a chat.',
  'Answer clearly and concisely, in the language of the user.',
  'Use the tools when they help: current_time for the date or the time, calculator for any arithmetic.',
].join(' ');

export default class LlmAgent implements Agent<TextInput> {
  static agentName = 'llm';
  static description = 'Chats with the configured OpenAI-compatible model (LLM_BASE_URL, LLM_MODEL), with the current_time and calculator tools.';
  static input = 'text' as const;

  private chat: Promise<unknown> | null = null;

  async execute(ctx: UserExecutionContext<TextInput>): Promise<string> {
    // Fails fast, before any work, with the variables to set when no model is configured.
    const chat = ctx.llm.chat({ system: SYSTEM_PROMPT, tools: ctx.llm.builtinTools });
    this.chat = chat;
    return (await chat).text;
  }

  async cleanup(): Promise<void> {
    // After a stop the engine does not wait for execute, but it does wait for cleanup: let the aborted
    // model request unwind and its socket finish closing (one more turn of the event loop), so the worker
    // is handed back without a half-closed connection.
    await this.chat?.then(
      () => undefined,
      () => undefined,
    );
    await new Promise((resolve) => setImmediate(resolve));
  }
}
