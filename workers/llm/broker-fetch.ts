/**
 * The `fetch` of a run's model client: it holds no key and opens no socket. Each request goes over the run's
 * MessagePort to the cell's model broker (workers/cell/model-broker.ts), which checks it, adds LLM_API_KEY and
 * streams the answer back: status and headers first, then body chunks, then the end (or an error). The request's
 * AbortSignal aborts the cell's request; the end of the run abandons every request still open.
 */
import type { MessagePort } from 'node:worker_threads';
import type { CellToWorker, ModelReply, WorkerToCell } from '../../protocol/worker-messages.js';
import { messageOf } from '../../protocol/errors.js';

/** The broker refuses bigger bodies; refusing here too saves copying them across. */
const MAX_BODY_BYTES = 4 * 1024 * 1024;
const NULL_BODY_STATUS = new Set([101, 103, 204, 205, 304]);

export interface BrokerLink {
  /** A WHATWG fetch for the OpenAI client (`new OpenAI({ fetch })`). */
  readonly fetch: typeof fetch;
  /** A message from the cell; true when it was the broker's. */
  handle(msg: CellToWorker): boolean;
  /** The run is over: every open request fails and the cell is told to abort it. */
  close(): void;
}

interface Pending {
  resolve(res: Response): void;
  reject(err: unknown): void;
  stream: ReadableStreamDefaultController<Uint8Array> | null;
  detach(): void;
}

/** A TypeError, as fetch rejects with, carrying the broker's code (the client reports code and message). */
function fetchFailed(code: string, message: string): TypeError {
  return Object.assign(new TypeError(message), { code });
}

function abortReason(signal: AbortSignal): unknown {
  return signal.reason ?? new DOMException('This operation was aborted', 'AbortError');
}

export function createBrokerLink(port: MessagePort): BrokerLink {
  const pending = new Map<number, Pending>();
  let nextId = 1;
  let closed = false;
  const post = (msg: WorkerToCell, transfer: ArrayBuffer[] = []) => {
    try {
      port.postMessage(msg, transfer);
    } catch {
      // the port is closed: the run is over
    }
  };
  /** Ends request `id` with an error, wherever it is (waiting for its answer, or streaming its body). */
  const fail = (id: number, err: unknown) => {
    const p = pending.get(id);
    if (!p) return;
    pending.delete(id);
    p.detach();
    if (p.stream) {
      try {
        p.stream.error(err);
      } catch {
        // already closed or errored
      }
    } else p.reject(err);
  };

  async function brokerFetch(input: string | URL | Request, init?: RequestInit): Promise<Response> {
    if (closed) throw fetchFailed('RUN_ENDED', 'the run is over');
    // Request normalises what the client hands over (headers object or pairs, string or bytes body, method).
    const request = new Request(input, init);
    const signal = init?.signal ?? (input instanceof Request ? input.signal : null);
    if (signal?.aborted) throw abortReason(signal);
    const body = request.body ? new Uint8Array(await request.arrayBuffer()) : null;
    if (body && body.byteLength > MAX_BODY_BYTES) throw fetchFailed('BODY_TOO_LARGE', `the request body is ${body.byteLength} bytes; at most ${MAX_BODY_BYTES}`);
    if (signal?.aborted) throw abortReason(signal);
    if (closed) throw fetchFailed('RUN_ENDED', 'the run is over');

    const id = nextId++;
    return new Promise<Response>((resolve, reject) => {
      const onAbort = () => {
        post({ type: 'model_abort', id });
        fail(id, abortReason(signal!));
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      pending.set(id, { resolve, reject, stream: null, detach: () => signal?.removeEventListener('abort', onAbort) });
      const headers: [string, string][] = [];
      request.headers.forEach((value, name) => headers.push([name, value]));
      post({ type: 'model_request', id, url: request.url, method: request.method, headers, body }, body ? [body.buffer as ArrayBuffer] : []);
    });
  }

  function onReply(msg: ModelReply) {
    const p = pending.get(msg.id);
    if (!p) return;
    switch (msg.type) {
      case 'model_response': {
        if (p.stream) return;
        let response: Response;
        try {
          if (NULL_BODY_STATUS.has(msg.status)) {
            response = new Response(null, { status: msg.status, statusText: msg.statusText, headers: msg.headers });
            pending.delete(msg.id);
            p.detach();
          } else {
            const body = new ReadableStream<Uint8Array>({
              start: (controller) => {
                p.stream = controller;
              },
              // The client stopped reading (it left its stream loop early): the cell stops too.
              cancel: () => {
                if (pending.get(msg.id) !== p) return;
                pending.delete(msg.id);
                p.detach();
                post({ type: 'model_abort', id: msg.id });
              },
            });
            response = new Response(body, { status: msg.status, statusText: msg.statusText, headers: msg.headers });
          }
        } catch (err) {
          post({ type: 'model_abort', id: msg.id });
          pending.delete(msg.id);
          p.detach();
          return p.reject(fetchFailed('BAD_RESPONSE', messageOf(err)));
        }
        p.resolve(response);
        return;
      }
      case 'model_chunk':
        p.stream?.enqueue(msg.chunk);
        return;
      case 'model_end':
        pending.delete(msg.id);
        p.detach();
        p.stream?.close();
        return;
      case 'model_error':
        fail(msg.id, fetchFailed(msg.error.code, msg.error.message));
        return;
    }
  }

  return {
    fetch: brokerFetch as typeof fetch,
    handle(msg) {
      if (msg.type !== 'model_response' && msg.type !== 'model_chunk' && msg.type !== 'model_end' && msg.type !== 'model_error') return false;
      onReply(msg);
      return true;
    },
    close() {
      if (closed) return;
      closed = true;
      for (const id of [...pending.keys()]) {
        post({ type: 'model_abort', id });
        fail(id, fetchFailed('RUN_ENDED', 'the run is over'));
      }
    },
  };
}
