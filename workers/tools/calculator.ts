/** Built-in tool `calculator`: evaluates an arithmetic expression with the safe parser in arithmetic.ts. */
import type { ToolDefinition } from '../llm/types.js';
import { evaluateArithmetic, KNOWN_NAMES } from './arithmetic.js';

export const calculatorTool: ToolDefinition<{ expression: string }> = {
  name: 'calculator',
  description:
    'Evaluates an arithmetic expression and returns the number. Supports + - * / % ^ (power), parentheses, ' +
    `and ${KNOWN_NAMES.join(', ')}. Use it for any calculation instead of computing in your head.`,
  parameters: {
    type: 'object',
    properties: { expression: { type: 'string', minLength: 1, maxLength: 1000, description: 'for example "2 * (3 + 4) ^ 2 / sqrt(16)"' } },
    required: ['expression'],
    additionalProperties: false,
  },
  handler: ({ expression }: { expression: string }) => ({ expression, result: evaluateArithmetic(expression) }),
};
