/**
 * One OpenAI-compatible client per run. Everything the library would otherwise pick up from the
 * environment (OPENAI_BASE_URL, OPENAI_ORG_ID, OPENAI_LOG, ...) is set explicitly: agents take their
 * configuration from ctx.settings only.
 */
import OpenAI from 'openai';
import type { AgentLogger } from '../agent-contract.js';
import type { ModelEndpoint } from './settings.js';

/** Local servers (Ollama, llama.cpp, vLLM) accept any key; the library insists on one. */
const NO_KEY = 'not-needed';

export function createModelClient(endpoint: ModelEndpoint, log: AgentLogger, dispatcher: object | null): OpenAI {
  return new OpenAI({
    // The chat's own connection pool (connection-pool.ts); Node's fetch accepts undici's `dispatcher`.
    ...(dispatcher ? { fetchOptions: { dispatcher } as object } : {}),
    baseURL: endpoint.baseUrl,
    apiKey: endpoint.apiKey ?? NO_KEY,
    organization: null,
    project: null,
    webhookSecret: null,
    // A retry would re-send a request the run's budget is already paying for; a failure is reported instead.
    maxRetries: 0,
    logLevel: 'warn',
    logger: {
      debug: (msg: string) => log.debug(`openai: ${msg}`),
      info: (msg: string) => log.info(`openai: ${msg}`),
      warn: (msg: string) => log.warn(`openai: ${msg}`),
      error: (msg: string) => log.error(`openai: ${msg}`),
    },
  });
}
