// The bench's trivial workload: two progress events, then an answer. The same module runs in every
// variant (raw Piscina, Atoll, in-process, process per run), so only the plumbing around it differs.
export default class StepsAgent {
  static agentName = 'steps';
  static description = 'Bench workload: emits two partial_result events and returns the input text.';

  async execute(ctx) {
    ctx.emit('partial_result', { text: 'step 1 ' });
    ctx.emit('partial_result', { text: 'step 2 ' });
    return ctx.input.text;
  }
}
