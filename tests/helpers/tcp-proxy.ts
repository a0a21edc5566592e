/**
 * A TCP proxy in front of a server, for tests that need a real network failure while the server behind it keeps
 * running. Every way ends with `restore()`:
 * - `drop()` cuts every open connection and refuses new ones (accepted, then reset at once);
 * - `hold()` cuts every open connection and leaves new ones hanging unanswered (a network that swallows
 *   packets); `restore()` lets the held ones through;
 * - `freeze()` stops forwarding on every open connection without closing it (a silent partition: nothing is
 *   reset, nothing arrives) and holds new ones; `restore()` lets everything flow again;
 * - `dropAfter(marker)`: the next chunk a client sends that holds `marker` still reaches the server (and is
 *   the last thing that does: the server sees the connection close after it), but the client gets no answer:
 *   then as `drop()`. With `COMMIT` that is a commit whose answer was lost in flight.
 */
import net from 'node:net';
import type { AddressInfo } from 'node:net';

export interface TcpProxy {
  url: string;
  port: number;
  drop(): void;
  hold(): void;
  freeze(): void;
  dropAfter(marker: string): void;
  restore(): void;
  /** Connections refused (reset) while dropped, since the proxy started. */
  readonly refused: number;
  /** Connections waiting for restore() while held or frozen, now. */
  readonly held: number;
  /** Connections that arrived while held or frozen, since the proxy started. */
  readonly heldSoFar: number;
  /** Whether the last dropAfter's marker went through (and the proxy dropped after it). */
  readonly tripped: boolean;
  close(): Promise<void>;
}

interface Link {
  client: net.Socket;
  upstream: net.Socket | null;
}

export async function startTcpProxy(targetPort: number, targetHost = '127.0.0.1'): Promise<TcpProxy> {
  const links = new Set<Link>();
  /** Upstreams half-closed by dropAfter, left for the server to finish; close() ends them too. */
  const orphans = new Set<net.Socket>();
  let mode: 'pass' | 'drop' | 'hold' | 'freeze' = 'pass';
  let marker: Buffer | null = null;
  let tripped = false;
  let refused = 0;
  let heldSoFar = 0;

  function close(link: Link): void {
    link.client.destroy();
    link.upstream?.destroy();
    links.delete(link);
  }

  function forward(from: net.Socket, to: net.Socket, link: Link, fromClient: boolean): void {
    from.on('data', (chunk: Buffer) => {
      if (to.destroyed || to.writableEnded) return;
      const trips = fromClient && marker !== null && chunk.includes(marker);
      const flowing = to.write(chunk);
      if (trips) {
        marker = null;
        tripped = true;
        // The server gets the chunk, then the end of the stream; the client hears nothing more.
        to.end();
        orphans.add(to);
        to.once('close', () => orphans.delete(to));
        link.client.destroy();
        links.delete(link);
        drop();
        return;
      }
      if (!flowing) {
        from.pause();
        to.once('drain', () => mode === 'pass' && from.resume());
      }
    });
  }

  function pass(link: Link): void {
    const upstream = net.connect(targetPort, targetHost);
    link.upstream = upstream;
    upstream.on('error', () => undefined);
    forward(link.client, upstream, link, true);
    forward(upstream, link.client, link, false);
    // A client cut by dropAfter leaves its upstream to finish: destroying it would reset the server's connection
    // while it still executes what the chunk carried.
    link.client.on('close', () => links.has(link) && close(link));
    upstream.on('close', () => {
      // A half-closed upstream (dropAfter) is left to finish; anything else takes its client along.
      if (links.has(link)) close(link);
    });
    link.client.resume();
  }

  const server = net.createServer({ pauseOnConnect: true }, (client) => {
    client.on('error', () => undefined);
    if (mode === 'drop') {
      refused++;
      return client.destroy();
    }
    const link: Link = { client, upstream: null };
    links.add(link);
    client.on('close', () => links.has(link) && !link.upstream && links.delete(link));
    if (mode === 'pass') pass(link);
    else heldSoFar++;
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;

  const connected = () => [...links].filter((l) => l.upstream);
  function drop(): void {
    mode = 'drop';
    for (const l of [...links]) close(l);
  }

  return {
    url: `http://127.0.0.1:${port}`,
    port,
    drop,
    hold() {
      mode = 'hold';
      for (const l of connected()) close(l);
    },
    freeze() {
      mode = 'freeze';
      for (const l of connected()) {
        l.client.pause();
        l.upstream!.pause();
      }
    },
    dropAfter(m: string) {
      marker = Buffer.from(m);
      tripped = false;
    },
    restore() {
      mode = 'pass';
      for (const l of [...links]) {
        if (!l.upstream) pass(l);
        else {
          l.client.resume();
          l.upstream.resume();
        }
      }
    },
    get refused() {
      return refused;
    },
    get held() {
      return mode === 'pass' ? 0 : links.size;
    },
    get heldSoFar() {
      return heldSoFar;
    },
    get tripped() {
      return tripped;
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const l of [...links]) close(l);
        for (const o of orphans) o.destroy();
        server.close(() => resolve());
      }),
  };
}
