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
