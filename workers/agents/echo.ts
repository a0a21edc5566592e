/** Built-in `echo`: thinks once, then answers with the input's text. The smallest complete agent. */
import type { Agent, TextInput, UserExecutionContext } from '../agent-contract.js';

export default class EchoAgent implements Agent<TextInput> {
  static agentName = 'echo';
  static description = 'Emits one agent_thinking event, then returns the input text.';
  static input = 'text' as const;

  async execute(ctx: UserExecutionContext<TextInput>): Promise<string> {
    ctx.emit('agent_thinking', { reasoning: 'echoing the input' });
    return ctx.input.text;
  }
}
