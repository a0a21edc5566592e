/**
 * MAX_CONNECTIONS_PER_USER across nodes after a node restarts under the same NODE_ID (a stable name, as the README
 * advises and deploy/compose.yaml does): the sockets its last process held are gone, so their slots must not count.
 * They are dropped once their node's lease in Redis lapses; a process that comes back under the same name renews
 * that lease, and must not make its predecessor's slots count again, or the users who had sockets there stay over
 * their cap for good (RATE_LIMITED at every handshake, on every node).
 */
import { UserClient } from '../helpers/client';
import { startTestCluster, type TestCluster } from '../helpers/cluster';

jest.setTimeout(120_000);

const LEASE_MS = 2000;
let cluster: TestCluster;
const open: UserClient[] = [];

beforeAll(async () => {
  cluster = await startTestCluster({ nodes: 2, leaseMs: LEASE_MS, env: { MAX_CONNECTIONS_PER_USER: '3' } });
}, 300_000);

afterAll(async () => {
  open.forEach((c) => c.close());
  await cluster?.destroy();
});

async function connect(userId: string, slot: number): Promise<UserClient> {
  const c = await UserClient.connect(cluster.url(slot), userId);
  open.push(c);
  return c;
}

const refusal = (userId: string, slot: number) => connect(userId, slot).then(() => null, (err: Error & { data?: { code?: string } }) => err.data?.code ?? err.message);

for (const signal of ['SIGKILL', 'SIGTERM'] as const) {
  test(`a user's sockets on a node restarted (${signal}) under its NODE_ID stop counting against MAX_CONNECTIONS_PER_USER`, async () => {
    const user = `slots-${signal}`;
    for (let i = 0; i < 3; i++) await connect(user, 2);
    expect(await refusal(user, 1)).toBe('RATE_LIMITED');
    await cluster.restart(2, { signal });
    // Past the dead process's lease in Redis: its slots may be dropped by any claim now.
    await new Promise((r) => setTimeout(r, LEASE_MS + 500));
    expect(await refusal(user, 1)).toBeNull();
    expect(await refusal(user, 2)).toBeNull();
  });
}
