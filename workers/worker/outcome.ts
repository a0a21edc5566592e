/** Turns what an agent returned or threw into a RunOutcome: flat data with a code, checked once here. */
import type { RunLimits, RunOutcome } from '../../protocol/cell-messages.js';
import { MAX_ERROR_MESSAGE, type ErrorBody } from '../../protocol/errors.js';
import { checkResult } from '../../protocol/result-check.js';
import { stopError } from '../../protocol/stop-errors.js';
import type { StopReason } from '../../protocol/worker-messages.js';

/** RangeErrors V8 throws when an allocation cannot be made (deep recursion is not one: it is the agent's bug). */
const ALLOCATION_FAILURES = /Invalid (string|array|typed array) length|Array buffer allocation failed|allocation failed/i;

export function completedOutcome(result: unknown, limits: RunLimits, executionTimeMs: number): RunOutcome {
  const checked = checkResult(result, limits.maxResultBytes);
  return checked.ok ? { status: 'completed', result: checked.result, executionTimeMs } : { status: 'failed', error: { code: checked.code, message: checked.message }, executionTimeMs };
}

/** The agent honoured its stop (ctx.signal). */
export function stoppedOutcome(reason: StopReason, executionTimeMs: number): RunOutcome {
  return { status: reason, error: stopError(reason, 'agent'), executionTimeMs };
}

export function failedOutcome(err: unknown, executionTimeMs: number): RunOutcome {
  return { status: 'failed', error: agentErrorBody(err), executionTimeMs };
}

export function agentErrorBody(err: unknown): ErrorBody {
  const code = (err as { code?: unknown })?.code;
  const message = String((err as { message?: unknown })?.message ?? err).slice(0, MAX_ERROR_MESSAGE);
  if (code === 'LIMIT_EXCEEDED' || code === 'SINGLETON_AGENT') return { code, message };
  const name = (err as { name?: unknown })?.name;
  if (name === 'RangeError' && ALLOCATION_FAILURES.test(message)) {
    return { code: 'OUT_OF_MEMORY', message: `the run exhausted memory: ${message}` };
  }
  return { code: 'AGENT_ERROR', message: typeof name === 'string' && name !== 'Error' ? `${name}: ${message}` : message };
}
