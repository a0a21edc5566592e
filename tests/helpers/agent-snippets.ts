/** Pieces of agent source shared by the tests that play an attacker (spliced into their agents' template strings). */

/**
 * Inside `execute(ctx)`, with THREAD_LOCKDOWN=0: the run's own port, the first one the runtime posts on (ctx.emit's
 * event), as `port`; `original` is MessagePort.prototype.postMessage. Needs MessagePort from node:worker_threads.
 */
export const FIND_RUN_PORT = `
    const original = MessagePort.prototype.postMessage;
    let port = null;
    MessagePort.prototype.postMessage = function (msg, ...rest) {
      port ??= this;
      return original.call(this, msg, ...rest);
    };
    try {
      ctx.emit('agent_thinking', { reasoning: 'finding my port' });
    } finally {
      MessagePort.prototype.postMessage = original;
    }
`;

/**
 * An agent (a whole module) that leaves a tree deeper than PATH_MAX in its scratch folder: a chain of folders ~4,000
 * characters long, and two more renamed into its tip (every path it names stays short, all inside its folder). With
 * `input.die` it then kills its own cell (SIGABRT: contained).
 */
export const DEEP_TREE_AGENT = `
import fs from 'node:fs';
import path from 'node:path';
export default class DeepTree {
  static agentName = 'deep-tree';
  async execute(ctx) {
    const chain = (root) => { let p = root; fs.mkdirSync(p); while (p.length < 4000) { p = path.join(p, 'a'); fs.mkdirSync(p); } return p; };
    const tip = chain(path.join(ctx.scratchDir, 'x'));
    for (let k = 0; k < 2; k++) { chain(path.join(ctx.scratchDir, 'y')); fs.renameSync(path.join(ctx.scratchDir, 'y'), path.join(tip, 'y' + k)); }
    if (ctx.input.die) process.kill(process.pid, 'SIGABRT');
    return 'deep';
  }
}
`;
