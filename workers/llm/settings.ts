/**
 * The model endpoint of one run, from ctx.settings.llm (validated by the front at start-up). An
 * unconfigured endpoint is an operator matter: the error says exactly which variables to set.
 */
import type { AgentSettings } from '../../protocol/cell-messages.js';

export interface ModelEndpoint {
  baseUrl: string;
  model: string;
  maxContextMessages: number;
  toolTimeoutMs: number;
}

export class LlmNotConfiguredError extends Error {}

export const HOW_TO_CONNECT =
  'no language model is configured: start Atoll with LLM_BASE_URL (an OpenAI-compatible endpoint, e.g. ' +
  'http://127.0.0.1:11434/v1 for Ollama or https://api.openai.com/v1) and LLM_MODEL (e.g. llama3.2 or gpt-4o-mini), ' +
  'plus LLM_API_KEY if the endpoint needs one';

export function isConfigured(llm: AgentSettings['llm']): boolean {
  return Boolean(llm.baseUrl && llm.model);
}

export function modelEndpoint(llm: AgentSettings['llm']): ModelEndpoint {
  if (!llm.baseUrl || !llm.model) {
    const missing = [!llm.baseUrl && 'LLM_BASE_URL', !llm.model && 'LLM_MODEL'].filter(Boolean).join(' and ');
    throw new LlmNotConfiguredError(`${HOW_TO_CONNECT} (missing: ${missing})`);
  }
  return {
    baseUrl: llm.baseUrl,
    model: llm.model,
    maxContextMessages: llm.maxContextMessages,
    toolTimeoutMs: llm.toolTimeoutMs,
  };
}
