/**
 * A pg pool whose clients' `query` calls go through `around` (given the client's own query), for tests that note
 * the queries a store issues or lose their answers.
 */
import type pg from 'pg';

export type Query = (q: unknown, ...rest: unknown[]) => Promise<unknown>;

export function aroundQueries(pool: pg.Pool, around: (query: Query, q: unknown, rest: unknown[]) => Promise<unknown>): pg.Pool {
  const wrap = (client: pg.PoolClient) =>
    new Proxy(client, {
      get(target, prop, receiver) {
        if (prop !== 'query') return Reflect.get(target, prop, receiver);
        const query = (target.query as Query).bind(target);
        return (q: unknown, ...rest: unknown[]) => around(query, q, rest);
      },
    });
  // One wrapper per client, as pg hands out the same client object each time it lends that connection.
  const wrapped = new WeakMap<pg.PoolClient, pg.PoolClient>();
  const wrapOnce = (client: pg.PoolClient) => wrapped.get(client) ?? wrapped.set(client, wrap(client)).get(client)!;
  return new Proxy(pool, {
    get(target, prop, receiver) {
      if (prop === 'connect') return async () => wrapOnce(await target.connect());
      const v = Reflect.get(target, prop, receiver);
      return typeof v === 'function' ? v.bind(target) : v;
    },
  });
}
