/** Built-in `echo`: thinks once, then answers with the input's text. The smallest complete agent. */
import type { Agent, UserExecutionContext } from '../agent-contract.js';

export default class EchoAgent implements Agent {
  static agentName = 'echo';
  static description = 'Emits one agent_thinking event, then returns the input text.';

  async execute(ctx: UserExecutionContext): Promise<string> {
    ctx.emit('agent_thinking', { reasoning: 'echoing the input' });
    return ctx.input.text;
  }
}
