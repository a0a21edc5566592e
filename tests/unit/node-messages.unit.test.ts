/**
 * Node messages of a single node: a message to itself arrives (after the current turn), one to any other node
 * reaches no one and says so, a broadcast reaches no one; a handler that throws does not stop the others.
 */
import { createInProcessNodeMessages } from '../../server/bus/in-process/node-messages';
import { createLogger } from '../../server/logger';

test('to itself: delivered after the current turn, with its own id as sender; to others and broadcasts: no one', async () => {
  const messages = createInProcessNodeMessages('solo', createLogger('silent'));
  await messages.start();
  const got: string[] = [];
  messages.onMessage(() => {
    throw new Error('a faulty handler');
  });
  const off = messages.onMessage((m, from) => got.push(`${from} ${m.type}`));
  expect(await messages.send('solo', { type: 'wake' })).toBe(true);
  expect(await messages.send('other', { type: 'wake' })).toBe(false);
  expect(await messages.broadcast({ type: 'node_died', node_id: 'x' })).toBe(0);
  await new Promise((r) => setImmediate(r));
  expect(got).toEqual(['solo wake']);
  off();
  await messages.send('solo', { type: 'wake' });
  await new Promise((r) => setImmediate(r));
  expect(got).toEqual(['solo wake']);
  await messages.stop();
});
