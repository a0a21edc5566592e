/**
 * A local OpenAI-compatible Chat Completions server for tests: it streams Server-Sent Events in the real
 * chunk format (content deltas, tool_calls deltas split across chunks, finish_reason, `data: [DONE]`),
 * answers HTTP errors and stalls on demand, and records every request, including whether the client
 * hung up before the answer ended. Like OpenAI, it refuses (400) a conversation with an unanswered tool
 * call or a tool result that answers nothing, so tests see what a real endpoint would reject.
 */
import http, { type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';

export type Step =
  | { text: string }
  | { reasoning: string }
  /** A tool call, its arguments sent in `pieces` chunks (default 2). */
  | { toolCall: { id: string; name: string; arguments: string; index?: number; pieces?: number } }
  | { delayMs: number }
  /** Waits for a state the test observes (e.g. a page showing what was streamed so far) before going on. */
  | { until: () => Promise<unknown> }
  /** Keeps the response open forever (until the client hangs up). */
  | { stall: true };

export type Reply = { steps: Step[]; finishReason?: string } | { status: number; message: string };

export interface SeenRequest {
  path: string;
  headers: IncomingHttpHeaders;
  body: any;
  /** The text of the last user message. */
  prompt: string;
  /** Tool messages after the last user message, in order. */
  toolResults: { tool_call_id: string; content: string }[];
  /** 400 reason when the conversation was refused. */
  refused: string | null;
  /** The client closed the connection before the response ended. */
  aborted: boolean;
  /** When the connection closed (Date.now()). */
  closedAt: number | null;
  ended: boolean;
}

export interface FakeOpenAI {
  url: string;
  requests: SeenRequest[];
  /** Requests whose prompt is `prompt`. */
  requestsFor(prompt: string): SeenRequest[];
  close(): Promise<void>;
}

export async function startFakeOpenAI(script: (req: SeenRequest) => Reply): Promise<FakeOpenAI> {
  const requests: SeenRequest[] = [];
  const server = http.createServer((req, res) => {
    let raw = '';
    req.setEncoding('utf8').on('data', (c: string) => (raw += c));
    req.on('end', () => {
      let body: any = null;
      try {
        body = JSON.parse(raw);
      } catch {
        // refused below
      }
      const messages: any[] = Array.isArray(body?.messages) ? body.messages : [];
      const lastUser = messages.map((m) => m?.role).lastIndexOf('user');
      const seen: SeenRequest = {
        path: req.url ?? '',
        headers: req.headers,
        body,
        prompt: lastUser >= 0 ? String(messages[lastUser].content) : '',
        toolResults: messages.slice(lastUser + 1).filter((m) => m?.role === 'tool'),
        refused: null,
        aborted: false,
        closedAt: null,
        ended: false,
      };
      requests.push(seen);
      res.on('close', () => {
        seen.closedAt = Date.now();
        if (!res.writableEnded) seen.aborted = true;
      });
      seen.refused = req.method !== 'POST' || req.url !== '/v1/chat/completions' ? `no route ${req.method} ${req.url}` : checkRequest(body);
      if (seen.refused) return sendError(res, seen.refused.startsWith('no route') ? 404 : 400, seen.refused, () => (seen.ended = true));
      let reply: Reply;
      try {
        reply = script(seen);
      } catch (err) {
        reply = { status: 500, message: `fake script failed: ${(err as Error).message}` };
      }
      if ('status' in reply) return sendError(res, reply.status, reply.message, () => (seen.ended = true));
      void stream(res, body.model, reply, () => (seen.ended = true));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    requestsFor: (prompt) => requests.filter((r) => r.prompt === prompt),
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

function sendError(res: http.ServerResponse, status: number, message: string, done: () => void) {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify({ error: { message, type: status >= 500 ? 'server_error' : 'invalid_request_error', code: null } }), done);
}

/** What OpenAI itself refuses: the tests' conversations must pass this to count as valid. */
function checkRequest(body: any): string | null {
  if (!body || typeof body !== 'object') return 'the body is not JSON';
  if (typeof body.model !== 'string' || !body.model) return 'model is required';
  if (body.stream !== true) return 'this fake only streams';
  if (!Array.isArray(body.messages) || body.messages.length === 0) return 'messages must be a non-empty array';
  let open: Set<string> | null = null; // tool calls of the last assistant message not yet answered
  for (const [i, m] of body.messages.entries()) {
    if (!['system', 'user', 'assistant', 'tool'].includes(m?.role)) return `messages[${i}].role is invalid`;
    if (m.role === 'tool') {
      if (!open || !open.delete(m.tool_call_id)) return `messages[${i}]: a tool message must answer a tool call of the preceding assistant message`;
      if (typeof m.content !== 'string') return `messages[${i}].content must be a string`;
      continue;
    }
    if (open && open.size > 0) return `messages[${i}]: tool calls ${[...open].join(', ')} were not answered`;
    open = null;
    if (m.role === 'assistant' && Array.isArray(m.tool_calls) && m.tool_calls.length > 0) {
      open = new Set(m.tool_calls.map((c: any) => c.id));
      for (const c of m.tool_calls) if (c.type !== 'function' || typeof c.function?.name !== 'string' || typeof c.function?.arguments !== 'string') return `messages[${i}].tool_calls is malformed`;
    } else if (typeof m.content !== 'string') return `messages[${i}].content must be a string`;
  }
  if (open && open.size > 0) return `tool calls ${[...open].join(', ')} were not answered`;
  if (body.tools !== undefined) {
    if (!Array.isArray(body.tools)) return 'tools must be an array';
    for (const t of body.tools) if (t?.type !== 'function' || typeof t.function?.name !== 'string' || t.function?.parameters?.type !== 'object') return 'tools[] is malformed';
  }
  return null;
}

async function stream(res: http.ServerResponse, model: string, reply: { steps: Step[]; finishReason?: string }, done: () => void) {
  res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', connection: 'keep-alive' });
  const id = `chatcmpl-${Math.random().toString(36).slice(2)}`;
  const created = Math.floor(Date.now() / 1000);
  const send = (delta: Record<string, unknown>, finish: string | null = null) => {
    if (res.destroyed) return;
    res.write(`data: ${JSON.stringify({ id, object: 'chat.completion.chunk', created, model, choices: [{ index: 0, delta, logprobs: null, finish_reason: finish }] })}\n\n`);
  };
  send({ role: 'assistant', content: '' });
  let sawToolCall = false;
  for (const step of reply.steps) {
    if (res.destroyed) return;
    if ('stall' in step) return; // never ends; the client must hang up
    if ('delayMs' in step) await new Promise((r) => setTimeout(r, step.delayMs));
    else if ('until' in step) await step.until();
    else if ('text' in step) send({ content: step.text });
    else if ('reasoning' in step) send({ reasoning_content: step.reasoning });
    else {
      sawToolCall = true;
      const { id: callId, name, arguments: args, index = 0, pieces = 2 } = step.toolCall;
      send({ tool_calls: [{ index, id: callId, type: 'function', function: { name, arguments: '' } }] });
      const size = Math.ceil(args.length / pieces) || 1;
      for (let at = 0; at < args.length; at += size) send({ tool_calls: [{ index, function: { arguments: args.slice(at, at + size) } }] });
    }
  }
  if (res.destroyed) return;
  send({}, reply.finishReason ?? (sawToolCall ? 'tool_calls' : 'stop'));
  res.end('data: [DONE]\n\n', done);
}
