/**
 * The PIN sweep's promises (src/session/pin.ts), as one scenario any
 * authority runs: SQLite in the unit suite, PostgreSQL in the cluster suite.
 * A create purges at most PIN_SWEEP ended PINs per number it issues on
 * (bounded work, whatever the number holds), the sweep still reaches every
 * ended PIN within a few creates, and the tally a new PIN's length is judged
 * by equals the number's rows at every step, never fewer than its live PINs.
 */
import { expect } from 'vitest';
import type { Authority } from '../../src/authority/authority.js';
import { PIN_SWEEP } from '../../src/session/pin.js';
import { partyInput } from '../../src/session/sessions.js';
import { londonDids, mobile } from './store.js';

/** What the store holds for one number: its PIN rows, and its tally (undefined: no row). */
export type PinRows = (dialled: string) => Promise<{ rows: number; tally: number | undefined }>;

export async function pinSweepScenario(authority: Authority, readRows: PinRows): Promise<void> {
  const t0 = Date.UTC(2026, 11, 1, 12);
  const [did] = londonDids(1) as [string];
  await authority.addToPool([{ number: did }], { defaultCountry: 'GB', now: t0, rule: 'operator' });
  const create = (i: number, now: number) =>
    authority.createSession({ id: `sweep-${i}`, first: partyInput(mobile(2 * i), undefined, 'GB'), second: partyInput(mobile(2 * i + 1), undefined, 'GB'), now, ttlMs: 86_400_000 });

  // 40 sessions on the one number: 80 PINs, all live; then every one released.
  const ENDED = 40;
  // The scenario means something only if one sweep cannot take every ended PIN.
  expect(2 * PIN_SWEEP).toBeLessThan(2 * ENDED);
  for (let i = 0; i < ENDED; i++) await create(i, t0 + i);
  expect(await readRows(did)).toEqual({ rows: 2 * ENDED, tally: 2 * ENDED });
  for (let i = 0; i < ENDED; i++) await authority.releaseSession(`sweep-${i}`, 0, t0 + 1_000, { hangup: false });

  // One create: its two PINs are issued on the number, and at most PIN_SWEEP ended rows go per PIN (a full purge would leave 2).
  let live = 0;
  let i = ENDED;
  await create(i++, t0 + 2_000);
  live += 2;
  const after = await readRows(did);
  expect(after.rows).toBeGreaterThanOrEqual(2 * ENDED + 2 - 2 * PIN_SWEEP);
  expect(after.rows).toBeLessThan(2 * ENDED + 2);
  expect(after.tally).toBe(after.rows);

  // The sweep reaches every ended PIN: within a bounded number of creates only the live ones remain.
  const limit = Math.ceil((2 * ENDED) / (PIN_SWEEP - 2)) + 2;
  let creates = 1;
  for (; creates < limit; creates++) {
    const { rows, tally } = await readRows(did);
    expect(tally).toBe(rows);
    expect(rows).toBeGreaterThanOrEqual(live);
    if (rows === live) break;
    await create(i++, t0 + 3_000 + creates);
    live += 2;
  }
  expect(await readRows(did)).toEqual({ rows: live, tally: live });
  expect(creates).toBeLessThan(limit);
}
