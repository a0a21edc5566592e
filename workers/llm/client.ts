/**
 * One OpenAI-compatible client per run. Everything the library would otherwise pick up from the
 * environment (OPENAI_BASE_URL, OPENAI_ORG_ID, OPENAI_LOG, ...) is set explicitly: agents take their
 * configuration from ctx.settings only. The client holds no key: its fetch hands every request to the cell's
 * model broker, which adds LLM_API_KEY outside the worker (workers/llm/broker-fetch.ts).
 */
import OpenAI from 'openai';
import type { AgentLogger } from '../agent-contract.js';
import type { ModelEndpoint } from './settings.js';

/** The library insists on a key; the broker drops this one and sets the real one (if any) itself. */
const PLACEHOLDER_KEY = 'set-by-the-cell';

export function createModelClient(endpoint: ModelEndpoint, log: AgentLogger, brokerFetch: typeof fetch): OpenAI {
  return new OpenAI({
    baseURL: endpoint.baseUrl,
    apiKey: PLACEHOLDER_KEY,
    fetch: brokerFetch,
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
