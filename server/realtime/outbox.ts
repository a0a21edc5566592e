/**
 * What a socket has been sent and not yet taken: bytes and packets handed to engine.io that its transport
 * has not finished writing. socket.io has no backpressure (socketio/socket.io#3158); this measures it from
 * engine.io's events instead of its private `writeBuffer`:
 * - `packetCreate`: a packet is queued for the client;
 * - `flush`: the queued packets go to the transport, which only happens once the previous batch is written,
 *   so that previous batch is done;
 * - `transport.writable`: nothing is in flight, so nothing is outstanding.
 *
 * The one place that relies on how engine.io writes (the meaning of those events and of `writable`, which
 * socket.io does not document as a contract). Checked against engine.io 6.6.12 (socket.io 4.8.4; its
 * Socket's `sendPacket` and `flush`); check again when either is upgraded
 * (tests/unit/outbox.unit.test.ts pins the reading, tests/stalled-client.test.ts and
 * tests/outbound-budget.test.ts the behaviour on a real server).
 */
/** The parts of an engine.io connection (socket.conn) this reads. */
export interface EngineConnection {
  transport: { writable: boolean };
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  on(event: string, listener: (...args: any[]) => void): unknown;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  off(event: string, listener: (...args: any[]) => void): unknown;
}

const sizeOf = (data: unknown): number =>
  typeof data === 'string' ? Buffer.byteLength(data) : data && typeof (data as ArrayBufferLike).byteLength === 'number' ? (data as ArrayBufferLike).byteLength : 0;

export function watchOutbox(conn: EngineConnection, now: () => number = Date.now) {
  let queued = { bytes: 0, packets: 0 };
  let inFlight = { bytes: 0, packets: 0 };
  let progressAt = now();
  const onPacket = (packet: { data?: unknown }) => {
    queued.bytes += sizeOf(packet.data) + 1;
    queued.packets++;
  };
  const onFlush = () => {
    inFlight = queued;
    queued = { bytes: 0, packets: 0 };
    progressAt = now();
  };
  conn.on('packetCreate', onPacket);
  conn.on('flush', onFlush);
  const idle = () => conn.transport.writable && queued.packets === 0;
  return {
    bytes: () => (idle() ? 0 : queued.bytes + inFlight.bytes),
    packets: () => (idle() ? 0 : queued.packets + inFlight.packets),
    /** How long the socket has had data outstanding without taking any (0 when nothing is outstanding). */
    stalledMs(): number {
      if (idle()) {
        progressAt = now();
        return 0;
      }
      return now() - progressAt;
    },
    stop(): void {
      conn.off('packetCreate', onPacket);
      conn.off('flush', onFlush);
    },
  };
}

export type Outbox = ReturnType<typeof watchOutbox>;
