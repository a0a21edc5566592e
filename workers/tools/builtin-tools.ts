/**
 * The tools Atoll ships, offered to agents as ctx.llm.builtinTools. Deeply frozen: the same objects serve
 * every run of a worker, so no run may change what the next one gets.
 */
import { deepFreeze } from '../../protocol/deep-freeze.js';
import type { ToolDefinition } from '../llm/types.js';
import { calculatorTool } from './calculator.js';
import { currentTimeTool } from './current-time.js';

export const BUILTIN_TOOLS: readonly ToolDefinition[] = deepFreeze([currentTimeTool, calculatorTool]);
