/**
 * A tool call's events carry what the model asked for and what the tool answered; an event nests at most
 * MAX_OUTPUT_DEPTH levels and ctx.emit throws past it (protocol/json-nesting.ts). Arguments or a result nested
 * deeper (a model asked for `[[[…]]]` 70 deep: ~140 bytes) go out as a preview, and the call is still answered
 * and framed by both events; passed as they were, ctx.emit's throw failed the whole run.
 */
import { runToolCall } from '../../workers/llm/tool-runner';
import { prepareTools } from '../../workers/llm/tool-set';
import { createRunEmitter } from '../../workers/worker/run-emitter';
import { portReadAtOnce } from '../helpers/emitter-port';

const nested = (levels: number): unknown => {
  let v: unknown = 1;
  for (let i = 0; i < levels; i++) v = [v];
  return v;
};

function rig() {
  const posted: { type: string; payload: any }[] = [];
  const { port, eventsTaken } = portReadAtOnce((m) => posted.push(m.event));
  const limits = { maxEventsPerRun: 100, maxEventBytes: 65_536, maxRunEventBytes: 1_000_000, maxResultBytes: 100_000 } as never;
  const emitter = createRunEmitter(port, limits, () => undefined, eventsTaken);
  const tools = prepareTools([{ name: 'echo', description: 'returns what it is given, nested once more', parameters: { type: 'object' }, handler: (a: { tree: unknown }) => ({ tree: [a.tree] }) }], 1000);
  return { posted, call: (args: unknown) => runToolCall({ id: 'c1', name: 'echo', arguments: JSON.stringify(args) }, tools, { emit: (t, p) => emitter.emit(t, p), signal: new AbortController().signal }) };
}

test('arguments and a result nested past what an event may carry go out as previews; the call is answered', async () => {
  const { posted, call } = rig();
  // {tree: 70 levels}: the arguments nest 71, the result 72.
  const answer = await call({ tree: nested(70) });
  expect(JSON.parse(answer)).toEqual({ tree: [nested(70)] });
  expect(posted.map((e) => e.type)).toEqual(['tool_executing', 'tool_completed']);
  expect(posted[0]!.payload.parameters).toMatchObject({ truncated: true, preview: expect.stringContaining('[[[') });
  expect(posted[1]!.payload).toMatchObject({ status: 'success', results: { truncated: true } });
});

test('arguments and a result within the depth go out as they are', async () => {
  const { posted, call } = rig();
  // The payload is one level, `parameters` {tree: …} one more: a tree of 61 makes the result {tree: [61]} 63 deep in `results`.
  await call({ tree: nested(61) });
  expect(posted[0]!.payload.parameters).toEqual({ tree: nested(61) });
  expect(posted[1]!.payload.results).toEqual({ tree: [nested(61)] });
});
