/**
 * What an agent declared it takes (`static input`, protocol/agent-input.ts), checked when a run is asked for:
 * an input it cannot take is refused with BAD_REQUEST and never becomes a run. Each agent's schema is
 * compiled once (again only if its cells report another one), by an Ajv of its own: one Ajv keeps every schema it
 * compiled and refuses a second with an `$id` it holds, so two agents declaring one `$id`, or an agent redeployed
 * with its schema changed under the same `$id`, failed every run of it until the front restarted, and a schema
 * that changed at each cell start (agent code decides it) grew the front's memory by one compiled schema each time.
 */
import Ajv, { type ValidateFunction } from 'ajv';
import { INPUT_SCHEMA_OPTIONS, TEXT_INPUT_SCHEMA, type AgentInput } from '../../protocol/agent-input.js';
import type { AgentInfo } from '../../protocol/cell-messages.js';
import { CodedError } from '../../protocol/errors.js';

const TEXT_SCHEMA = JSON.stringify(TEXT_INPUT_SCHEMA);

export function createInputChecks() {
  const compiled = new Map<string, { schema: string; ajv: Ajv; validate: ValidateFunction }>();

  return {
    /** Throws BAD_REQUEST saying what the agent takes when `input` does not match its declaration. */
    check(agent: AgentInfo, input: AgentInput): void {
      if (!agent.input) return;
      const schema = JSON.stringify(agent.input);
      let entry = compiled.get(agent.name);
      if (!entry || entry.schema !== schema) {
        const ajv = new Ajv(INPUT_SCHEMA_OPTIONS);
        entry = { schema, ajv, validate: ajv.compile(agent.input) };
        compiled.set(agent.name, entry);
      }
      if (entry.validate(input)) return;
      if (schema === TEXT_SCHEMA) {
        throw new CodedError('BAD_REQUEST', `agent ${JSON.stringify(agent.name)} takes text: input must be a string or an object with a "text" string`);
      }
      const why = entry.ajv.errorsText(entry.validate.errors, { dataVar: 'input' });
      throw new CodedError('BAD_REQUEST', `agent ${JSON.stringify(agent.name)} does not take this input: ${why} (GET /v1/agents shows the schema)`);
    },
  };
}

export type InputChecks = ReturnType<typeof createInputChecks>;
