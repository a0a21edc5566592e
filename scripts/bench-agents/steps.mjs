// The bench's trivial workload: two progress events (a thought, then a partial answer), then an answer. The
// same module runs in every variant (raw Piscina, Atoll, in-process, process per run), so only the plumbing
// around it differs. Two different types on purpose: Atoll merges consecutive partial_result events emitted
// within 20 ms, and the bench must persist and deliver two progress events per run.
export default class StepsAgent {
  static agentName = 'steps';
  static description = 'Bench workload: emits agent_thinking and partial_result, then returns the input text.';

  async execute(ctx) {
    ctx.emit('agent_thinking', { reasoning: 'step 1' });
    ctx.emit('partial_result', { text: 'step 2 ' });
    return ctx.input.text;
  }
}
