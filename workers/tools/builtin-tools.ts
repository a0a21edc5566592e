/**
 * The tools Atoll ships, offered to agents as ctx.llm.builtinTools. Deeply frozen: the same objects serve
 * every run of a thread, so no run may change what the next one gets.
 */
import type { ToolDefinition } from '../llm/types.js';
import { calculatorTool } from './calculator.js';
import { currentTimeTool } from './current-time.js';

export const BUILTIN_TOOLS: readonly ToolDefinition[] = deepFreeze([currentTimeTool, calculatorTool]);

function deepFreeze<T>(value: T): T {
  if (value && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value)) deepFreeze(v);
  }
  return value;
}
