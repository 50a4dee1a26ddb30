import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { afterEach, beforeEach, expect, it } from 'vitest';
import { invariantViolations, londonDids, seedPool, tempDb } from '../support/store.js';

const run = promisify(execFile);
let store: ReturnType<typeof tempDb>;
beforeEach(() => {
  store = tempDb();
});
afterEach(() => store.cleanup());

it('keeps the invariant when four processes create and release on one file at once', async () => {
  seedPool(store.db, londonDids(4));
  const worker = new URL('./workers/creator.mjs', import.meta.url).pathname;
  // 30 parties sharing 4 numbers: heavy contention, frequent exhaustion, constant reuse.
  const results = await Promise.all(
    [0, 1, 2, 3].map((w) => run(process.execPath, [worker, store.path, String(w), '400', '30'], { timeout: 60_000 })),
  );
  const outcomes = results.map((r) => JSON.parse(r.stdout) as { acknowledged: string[]; exhausted: number });
  const acknowledged = outcomes.flatMap((o) => o.acknowledged);
  // Every attempt either was acknowledged or was refused as exhausted: no other error (no SQLITE_BUSY) escaped.
  expect(acknowledged.length + outcomes.reduce((n, o) => n + o.exhausted, 0)).toBe(4 * 400);
  expect(acknowledged.length).toBeGreaterThan(0);
  expect(invariantViolations(store.db, Date.now())).toEqual([]);
  const stored = new Set(store.db.prepare('SELECT id FROM session').pluck().all() as string[]);
  expect(acknowledged.filter((id) => !stored.has(id))).toEqual([]);
  expect(store.db.pragma('integrity_check', { simple: true })).toBe('ok');
}, 90_000);
