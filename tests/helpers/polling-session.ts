/** socket.io over raw engine.io long-polling (protocol 4): one session, packets sent and read by hand. */
export async function pollingSession(url: string) {
  const base = `${url}/socket.io/?EIO=4&transport=polling`;
  const open = await (await fetch(base)).text();
  const sid = (JSON.parse(open.slice(1)) as { sid: string }).sid;
  const at = `${base}&sid=${sid}`;
  return {
    /** Sends packets in ONE POST (engine.io separates them with the record separator). */
    async post(packets: string[]): Promise<void> {
      const res = await fetch(at, { method: 'POST', body: packets.join('\x1e'), headers: { 'content-type': 'text/plain;charset=UTF-8' } });
      if (res.status !== 200) throw new Error(`POST ${res.status}: ${await res.text()}`);
    },
    async read(): Promise<string[]> {
      return (await (await fetch(at)).text()).split('\x1e');
    },
    /** Whether the server still knows the session (a noop packet is accepted only by a live one). */
    async alive(): Promise<boolean> {
      const res = await fetch(at, { method: 'POST', body: '6', headers: { 'content-type': 'text/plain;charset=UTF-8' } });
      await res.arrayBuffer();
      return res.status === 200;
    },
  };
}
