import type { PushResult, PushSender, SlidePush } from '../calls/slide-queue.js';
import type { PgTarget } from '../replica/stream.js';
import { slidePlan, type SessionRow } from '../session/sessions.js';
import { PgStore } from './pg-store.js';

/**
 * A cluster node's sliding pushes, applied on the authority (`vnum serve
 * --authority`; the queue that calls this is src/calls/slide-queue.ts, off
 * the call path). The rule is the single box's (slidePlan), judged on the
 * authority's own row, never on the node's copy: a release the node has not
 * heard of yet still wins. The move is one UPDATE of the session and its two
 * bridges, conditional on the row being as it was read (not released since,
 * its end unchanged), so two nodes pushing one session at once, or a push
 * racing a release, never move an end backwards or past a release; a lost
 * race reads again. The new end reaches every node through replication.
 */

/** The session's end and its two bridges' ends, in one statement, only if the row is still as read. */
const SLIDE_SQL = `WITH s AS (
    UPDATE session SET ends_at = $1 WHERE sid = $2 AND released_at IS NULL AND ends_at IS NOT DISTINCT FROM $3
    RETURNING sid, first_party, first_masked_as, second_party, second_masked_as
  ), b AS (
    UPDATE bridge SET ends_at = $1 FROM s
     WHERE bridge.sid = s.sid
       AND ((bridge.caller = s.second_party AND bridge.dialled = s.first_masked_as) OR (bridge.caller = s.first_party AND bridge.dialled = s.second_masked_as))
    RETURNING 1
  )
  SELECT (SELECT count(*) FROM s)::int AS moved`;

/** Reads and conditional writes of one push before it gives up on a row that keeps changing under it. */
const RACES = 3;

export interface PgSlider {
  send: PushSender;
  close(): Promise<void>;
}

/** A sender on its own small pool (two connections, short bounds: a push that waits long is worth little). */
export function pgSlider(target: PgTarget, options: { timeoutMs?: number } = {}): PgSlider {
  const store = new PgStore(target, { connections: 2, applicationName: 'vnum serve', timeoutMs: options.timeoutMs ?? 2_000 });
  const send = async (push: SlidePush): Promise<PushResult> => {
    for (let race = 0; race < RACES; race++) {
      const { rows } = await store.query<SessionRow>({ name: 'vnum_slide_read', text: 'SELECT * FROM session WHERE id = $1', values: [push.session] });
      const row = rows[0];
      const end = slidePlan(row, push.at, push.keepAlive);
      if (row === undefined || end === undefined) return 'unchanged';
      const { rows: wrote } = await store.query<{ moved: number }>({ name: 'vnum_slide_write', text: SLIDE_SQL, values: [end, row.sid, row.ends_at] });
      if (wrote[0]?.moved === 1) return 'pushed';
    }
    return 'unchanged';
  };
  return { send, close: () => store.close() };
}
