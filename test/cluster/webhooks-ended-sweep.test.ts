/**
 * The session.ended sweep on the authority in batches
 * (src/authority/pg-webhooks.ts, reportPgSessionEnds): a full batch leaves
 * the rows of its last end to the next sweep, so everything reported is at
 * or before `ends_reported_to`, which a release reads to know whether its
 * session's end was already reported (then it records no session.released
 * after session.ended).
 */
import { expect, it } from 'vitest';
import { PgStore } from '../../src/authority/pg-store.js';
import { openPostgresAuthority } from '../../src/authority/postgres.js';
import { reportPgSessionEnds } from '../../src/authority/pg-webhooks.js';
import { partyInput } from '../../src/session/sessions.js';
import { setPgRecording } from '../../src/webhooks/pg-outbox.js';
import { clusterSuite } from '../support/cluster/suite.js';
import { DIDS, partyNumber } from '../support/cluster/writer.js';

const T0 = Date.UTC(2026, 11, 1, 12);

clusterSuite('the session.ended sweep on the authority', (env) => {
  it('a full batch reports only the ends before its last one; ends_reported_to never passes an end not yet reported', async () => {
    const { target, client } = await env.authority();
    const authority = await openPostgresAuthority(target);
    const store = new PgStore(target);
    try {
      await setPgRecording(client, true, T0);
      await authority.addToPool(DIDS.map((number) => ({ number })), { defaultCountry: 'GB', now: T0, rule: 'operator' });
      // Five sessions ending at +10, +20, +20, +30, +30 s.
      const ttls = [10, 20, 20, 30, 30];
      for (const [i, ttl] of ttls.entries()) {
        await authority.createSession({ id: `s${i}`, first: partyInput(partyNumber(100 + i), undefined, 'GB'), second: partyInput(partyNumber(200 + i), undefined, 'GB'), now: T0, ttlMs: ttl * 1_000 });
      }
      const ended = async () => (await client.query<{ session_id: string }>("SELECT session_id FROM webhook_event WHERE type = 'session.ended' ORDER BY seq")).rows.map((r) => r.session_id);
      const reportedTo = async () => Number((await client.query<{ to: string }>('SELECT ends_reported_to AS to FROM webhook_outbox')).rows[0]!.to);
      const now = T0 + 60_000;

      // Batches of 3: [+10, +20, +20] is full; +20's rows wait for the next sweep.
      expect(await reportPgSessionEnds(store, now, 3)).toBe(1);
      expect(await ended()).toEqual(['s0']);
      expect(await reportedTo()).toBe(T0 + 20_000 - 1);
      // [+20, +20, +30] is full: the two at +20.
      expect(await reportPgSessionEnds(store, now, 3)).toBe(2);
      expect(await ended()).toEqual(['s0', 's1', 's2']);
      expect(await reportedTo()).toBe(T0 + 30_000 - 1);
      // [+30, +30]: the rest, and everything up to now is reported.
      expect(await reportPgSessionEnds(store, now, 3)).toBe(2);
      expect(await ended()).toEqual(['s0', 's1', 's2', 's3', 's4']);
      expect(await reportedTo()).toBe(now);
      expect(await reportPgSessionEnds(store, now, 3)).toBe(0);
    } finally {
      await store.close();
      await authority.close();
      await client.end();
    }
  });
});
