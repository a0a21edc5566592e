// Keeps a run in flight for input.ms (honouring ctx.signal), so the bench can count the memory of many
// concurrent runs at once.
export default class HoldAgent {
  static agentName = 'hold';
  static description = 'Bench workload: stays in flight for input.ms milliseconds, then returns.';

  async execute(ctx) {
    const ms = Number(ctx.input.ms ?? 1000);
    ctx.emit('partial_result', { text: 'holding ' });
    await new Promise((resolve) => {
      const t = setTimeout(resolve, ms);
      ctx.signal.addEventListener('abort', () => { clearTimeout(t); resolve(); }, { once: true });
    });
    return `held ${ms} ms`;
  }
}
