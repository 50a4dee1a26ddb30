/**
 * Versioned schema. Each entry moves `PRAGMA user_version` from its index to
 * index + 1; entries are never edited once released, only appended.
 *
 * `bridge` holds one row per (caller, dialled) pair ever lent: the pair's
 * latest session. Its primary key is the routing key, so the database itself
 * holds at most one bridge per pair, and a pair's row is only handed to a new
 * session once the old one has ended (see `lendBridge`). The same rows are the
 * party's dial history (when it was last lent each number, to whom), so
 * allocation reads one contiguous key range per party. `ends_at` is a copy of
 * the session's, kept in the same transactions, so that neither a routing
 * decision nor an allocation has to visit the session table to tell a live
 * bridge from an ended one.
 *
 * Each create writes few pages: the session row and its id entry (both
 * appended when ids grow), two bridge rows. Every page written is a WAL frame
 * now and a checkpoint write later: that, not CPU, bounds creates per second.
 */
export const MIGRATIONS: readonly string[] = [
  `
  CREATE TABLE pool_number (
    number    TEXT PRIMARY KEY,
    country   TEXT NOT NULL,
    state     TEXT NOT NULL CHECK (state IN ('available', 'reserved', 'retired')),
    added_at  INTEGER NOT NULL
  ) WITHOUT ROWID;

  CREATE TABLE session (
    sid               INTEGER PRIMARY KEY,
    id                TEXT NOT NULL UNIQUE,
    first_party       TEXT NOT NULL,
    first_masked_as   TEXT NOT NULL,
    second_party      TEXT NOT NULL,
    second_masked_as  TEXT NOT NULL,
    created_at        INTEGER NOT NULL,
    expires_at        INTEGER,
    released_at       INTEGER,
    ends_at           INTEGER,
    CHECK (first_party <> second_party)
  );

  CREATE TABLE bridge (
    caller   TEXT NOT NULL,
    dialled  TEXT NOT NULL,
    sid      INTEGER NOT NULL REFERENCES session (sid),
    target   TEXT NOT NULL,
    lent_at  INTEGER NOT NULL,
    ends_at  INTEGER,
    PRIMARY KEY (caller, dialled)
  ) WITHOUT ROWID;

  CREATE TABLE meta (
    key    TEXT PRIMARY KEY,
    value  INTEGER NOT NULL
  ) WITHOUT ROWID;
  INSERT INTO meta (key, value) VALUES ('pool_revision', 0);
  `,
  // 2: the call log (src/calls/). One row per call the router bridged, keyed
  // for Asterisk by the caller channel's Uniqueid (AGI's agi_uniqueid, AMI's
  // Uniqueid); the facts come from AMI events (see src/calls/facts.ts). Times
  // are ms since the epoch. No real number is stored: `caller` names the
  // session's party. The partial index holds only the calls still open, so
  // the hang-up watcher's query and `vnum calls --live` read a handful of rows.
  // `router_status` is what `vnum serve` reports for `vnum health`.
  `
  CREATE TABLE call (
    id                   INTEGER PRIMARY KEY,
    uniqueid             TEXT NOT NULL,
    channel              TEXT NOT NULL,
    session_id           TEXT NOT NULL REFERENCES session (id),
    caller               TEXT NOT NULL CHECK (caller IN ('first', 'second')),
    started_at           INTEGER NOT NULL,
    ringing_at           INTEGER,
    answered_at          INTEGER,
    ended_at             INTEGER,
    lost_at              INTEGER,
    dial_status          TEXT,
    hangup_cause         INTEGER,
    hangup_cause_text    TEXT,
    callee_uniqueid      TEXT,
    hangup_requested_at  INTEGER,
    hangup_reason        TEXT CHECK (hangup_reason IN ('release', 'session-ended'))
  );
  CREATE INDEX call_uniqueid ON call (uniqueid);
  CREATE INDEX call_session ON call (session_id, id);
  CREATE INDEX call_started ON call (started_at);
  CREATE INDEX call_open ON call (session_id) WHERE ended_at IS NULL AND lost_at IS NULL;

  CREATE TABLE router_status (
    router            TEXT PRIMARY KEY,
    pid               INTEGER NOT NULL,
    started_at        INTEGER NOT NULL,
    updated_at        INTEGER NOT NULL,
    ami_state         TEXT NOT NULL,
    ami_since         INTEGER,
    ami_error         TEXT,
    asterisk_version  TEXT
  ) WITHOUT ROWID;
  `,
  // 3: the number-type policy at routing time. The target's type
  // (src/numbers/type.ts: a small integer, append-only codes) is written with
  // the bridge at create, so the router judges the policy against the row it
  // reads anyway, without parsing the target on every call. NULL: a row from
  // before this column; the router classifies its target itself (cached).
  `
  ALTER TABLE bridge ADD COLUMN target_type INTEGER;
  `,
  // 4: where a cluster node's replica stands (src/replica/), and how fresh it
  // is. Both empty on a single box. replica_state, one row: which PostgreSQL cluster, database, slot and publication
  // the replicated tables were copied from (and which tables, a JSON array),
  // and the WAL position they hold everything up to, written in the same
  // SQLite transaction as the rows it covers, so a restart resumes exactly
  // there. LSNs are text ('X/Y').
  `
  CREATE TABLE replica_state (
    id                 INTEGER PRIMARY KEY CHECK (id = 1),
    system_id          TEXT NOT NULL,
    database           TEXT NOT NULL,
    slot               TEXT NOT NULL,
    publication        TEXT NOT NULL,
    tables             TEXT NOT NULL,
    built_lsn          TEXT NOT NULL,
    built_at           INTEGER NOT NULL,
    applied_lsn        TEXT NOT NULL,
    applied_commit_at  INTEGER
  );

  -- The node's replica process reports here every ping (src/replica/health.ts),
  -- so vnum serve judges the replica's freshness with one read and no IPC.
  -- fresh_at: the last moment the file was known to hold everything
  -- PostgreSQL had sent (this host's clock, ms); updated_at: the report's time.
  CREATE TABLE replica_health (
    id               INTEGER PRIMARY KEY CHECK (id = 1),
    node             TEXT NOT NULL,
    pid              INTEGER NOT NULL,
    phase            TEXT NOT NULL,
    fresh_at         INTEGER,
    last_contact_at  INTEGER,
    lag_bytes        INTEGER,
    last_error       TEXT,
    updated_at       INTEGER NOT NULL
  );
  `,
  // 5: the HTTP API (issue 13). Sessions by party: `session list --party` and
  // GET /v1/sessions?party= read one index range per side, newest first,
  // instead of walking the table (each index costs every create one more
  // page written: docs/benchmarks.md, store). API keys: the id is the key's
  // public part; only a SHA-256 of its secret is stored; a name is unique
  // among keys not revoked. Neither table holds a routing fact: cluster mode
  // keeps api_key out of what replicas receive.
  `
  CREATE INDEX session_first_party ON session (first_party);
  CREATE INDEX session_second_party ON session (second_party);

  CREATE TABLE api_key (
    id            TEXT PRIMARY KEY,
    name          TEXT NOT NULL,
    scopes        TEXT NOT NULL,
    secret_sha256 BLOB NOT NULL,
    created_at    INTEGER NOT NULL,
    revoked_at    INTEGER,
    last_used_at  INTEGER
  ) WITHOUT ROWID;
  CREATE UNIQUE INDEX api_key_name ON api_key (name) WHERE revoked_at IS NULL;
  `,
  // 6: provider sync (issue 13, src/pool/sync.ts): the retired numbers that a
  // sync retired, because the provider stopped listing them. A sync puts such
  // a number back in service when the provider lists it again (last night's
  // export was cut short); a number retired any other way (pool retire, a
  // row of the operator's own file) has no row here and stays retired.
  // Every change of a number's state goes through src/pool/pool.ts, which
  // keeps this table in step (a row only while the number is retired).
  `
  CREATE TABLE pool_retired_by_sync (
    number      TEXT PRIMARY KEY REFERENCES pool_number (number),
    retired_at  INTEGER NOT NULL
  ) WITHOUT ROWID;
  `,
  // 7: the webhook outbox (issue 13, src/webhooks/, README "Webhooks"). An event is
  // written in the transaction of the fact it reports, only while recording
  // is on (meta 'webhooks_recording_since' > 0), and never holds a real
  // number. `seq` is the write order; a session's events go out in that
  // order, one at a time: only the oldest open event of a session is
  // 'pending' (due at next_at), the later ones wait 'queued'. 'parked':
  // retried for the whole window and given up until the operator retries it
  // (it still holds its session's later events back). `done_at`: delivered
  // or discarded; the partial indexes hold only open events, so they stay the
  // size of the backlog. `webhook_session_end`: sessions whose end has not
  // been reported yet (session.ended happens by the clock, with no write),
  // keyed by the end itself: one B-tree, and the sweep reads its front.
  `
  CREATE TABLE webhook_event (
    seq              INTEGER PRIMARY KEY,
    id               TEXT NOT NULL,
    type             TEXT NOT NULL,
    session_id       TEXT,
    occurred_at      INTEGER NOT NULL,
    recorded_at      INTEGER NOT NULL,
    data             TEXT NOT NULL,
    state            TEXT NOT NULL CHECK (state IN ('queued', 'pending', 'parked', 'delivered', 'discarded')),
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_at          INTEGER,
    first_failed_at  INTEGER,
    last_error       TEXT,
    parked_at        INTEGER,
    done_at          INTEGER
  );
  CREATE INDEX webhook_event_open ON webhook_event (session_id, seq) WHERE done_at IS NULL;
  CREATE INDEX webhook_event_due ON webhook_event (next_at) WHERE state = 'pending';
  CREATE INDEX webhook_event_parked ON webhook_event (seq) WHERE state = 'parked';

  CREATE TABLE webhook_session_end (
    ends_at     INTEGER NOT NULL,
    session_id  TEXT NOT NULL,
    PRIMARY KEY (ends_at, session_id)
  ) WITHOUT ROWID;

  CREATE TABLE webhook_counter (
    name   TEXT PRIMARY KEY,
    value  INTEGER NOT NULL
  ) WITHOUT ROWID;
  INSERT INTO webhook_counter (name, value) VALUES
    ('delivered', 0), ('failed_attempts', 0), ('parked', 0), ('discarded', 0),
    ('refusals_dropped', 0), ('refused_no_session', 0), ('refused_invalid_caller', 0);

  CREATE TABLE webhook_deliverer (
    instance    TEXT PRIMARY KEY,
    url         TEXT NOT NULL,
    pid         INTEGER NOT NULL,
    started_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    in_flight   INTEGER NOT NULL,
    last_error  TEXT,
    stopped     INTEGER NOT NULL DEFAULT 0
  ) WITHOUT ROWID;

  INSERT INTO meta (key, value) VALUES ('webhooks_recording_since', 0), ('webhooks_ends_reported_to', 0);
  `,
  // 8: PINs and out-of-session handling (issue 14, src/session/pin.ts, src/routing/out-of-session.ts).
  // `pin` holds one row per party of a session: the party that may type it
  // (`caller`) and the number it dials (`dialled`), keyed by (dialled, digest)
  // so that a PIN typed on a number is one point read. `digest` is an HMAC of
  // the PIN under `pin_key` (one random key per database): the PIN itself is
  // never stored, and the B-tree compares digests, not digits. A row is the
  // PIN of a live session only while the bridge (caller, dialled) still
  // belongs to its `sid`; rows of ended sessions are purged as new PINs are
  // issued on their number. `pool_number` gets each number's handling of
  // callers without a bridge (NULL: the router's default), `call` whether
  // a PIN bridged it, `refusal` a counter per pool number and reason.
  `
  CREATE TABLE pin_key (
    id   INTEGER PRIMARY KEY CHECK (id = 1),
    key  BLOB NOT NULL
  );
  INSERT INTO pin_key (id, key) VALUES (1, randomblob(32));

  CREATE TABLE pin (
    dialled  TEXT NOT NULL,
    digest   BLOB NOT NULL,
    caller   TEXT NOT NULL,
    sid      INTEGER NOT NULL REFERENCES session (sid),
    PRIMARY KEY (dialled, digest)
  ) WITHOUT ROWID;

  ALTER TABLE pool_number ADD COLUMN pin_mode TEXT CHECK (pin_mode IN ('off', 'withheld', 'all'));
  ALTER TABLE pool_number ADD COLUMN out_of_session TEXT CHECK (out_of_session IN ('announce', 'fallback'));
  ALTER TABLE pool_number ADD COLUMN fallback TEXT;

  ALTER TABLE call ADD COLUMN via TEXT CHECK (via IN ('pin'));

  CREATE TABLE refusal (
    dialled  TEXT NOT NULL,
    reason   TEXT NOT NULL,
    count    INTEGER NOT NULL,
    last_at  INTEGER NOT NULL,
    PRIMARY KEY (dialled, reason)
  ) WITHOUT ROWID;
  `,
  // 9: sliding TTL, call shaping, recordings (issue 14). `idle_ms`: a session
  // that ends after this long without a call (its ends_at pushed forward by
  // each bridged call, never past expires_at, never after a release).
  // `call_settings`: the session's announcements, limits and recording choice
  // as JSON (src/session/call-settings.ts), NULL for none. On the call log,
  // the recording's path as vnum sees it (named by the call's Uniqueid, never
  // by a number), its size once the call has ended, and when vnum deleted it;
  // the partial index holds only the recordings still on disk.
  `
  ALTER TABLE session ADD COLUMN idle_ms INTEGER;
  ALTER TABLE session ADD COLUMN call_settings TEXT;
  ALTER TABLE call ADD COLUMN recording_path TEXT;
  ALTER TABLE call ADD COLUMN recording_bytes INTEGER;
  ALTER TABLE call ADD COLUMN recording_deleted_at INTEGER;
  CREATE INDEX call_recording ON call (coalesce(ended_at, lost_at)) WHERE recording_path IS NOT NULL AND recording_deleted_at IS NULL;
  `,
  // 10: a tally of each number's PIN rows and the cursor of its sweep
  // (src/session/pin.ts): a new PIN's length is judged by `pins` and the PINs
  // of ended sessions are purged a few at a time from `swept_to` on, instead
  // of visiting every PIN of the number at each create. `pins` counts the
  // number's rows, live or ended but not yet swept: at least its live PINs.
  `
  CREATE TABLE pin_tally (
    dialled   TEXT PRIMARY KEY,
    pins      INTEGER NOT NULL CHECK (pins >= 0),
    swept_to  BLOB
  ) WITHOUT ROWID;
  INSERT INTO pin_tally (dialled, pins) SELECT dialled, count(*) FROM pin GROUP BY dialled;
  `,
  // 11: a hang-up request on the session (cluster mode, issue 15): the
  // authority's release with hangup writes its time into the session's row,
  // replication brings it to every node, and each node's vnum serve hangs up
  // its open calls of that session that started at or before it
  // (src/calls/store.ts, callsToHangUp). NULL on a single box, whose release
  // marks the calls themselves (call.hangup_requested_at).
  `
  ALTER TABLE session ADD COLUMN hangup_requested_at INTEGER;
  `,
  // 12: the call log's shipping to the authority (cluster mode, issue 15;
  // src/calls/shipping.ts). Every insert or update of a call row takes the
  // next number of `call_shipping.last_seq` into its `change_seq` (the
  // triggers; a trigger's own write does not fire it again, since it changes
  // change_seq), so "what changed since the last shipment" is one range of
  // the index. `shipped_seq` is how far the authority has this file's log
  // (moved only after PostgreSQL's COMMIT); `log_id` names this file's log
  // on the authority, so a node whose file is made anew (its call ids start
  // again at 1) never collides with its old rows there. Calls logged before
  // this migration ship too (their change_seq is their id). On a single box
  // nothing ships and the sequence just counts. `event_to_ship`: what a
  // node's router records for the webhook outbox outside the call log
  // (call.refused, and the refusal counters as deltas), queued for the
  // shipper, deleted once the authority has them; bounded by the writer
  // (src/calls/shipping.ts, MAX_EVENTS_TO_SHIP). AUTOINCREMENT: a seq is
  // never used twice, so the authority can tell one it already took.
  `
  CREATE TABLE event_to_ship (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    type         TEXT NOT NULL,
    session_id   TEXT,
    occurred_at  INTEGER NOT NULL,
    data         TEXT NOT NULL
  );

  CREATE TABLE call_shipping (
    id           INTEGER PRIMARY KEY CHECK (id = 1),
    log_id       TEXT NOT NULL,
    last_seq     INTEGER NOT NULL,
    shipped_seq  INTEGER NOT NULL,
    shipped_at   INTEGER
  );
  ALTER TABLE call ADD COLUMN change_seq INTEGER;
  UPDATE call SET change_seq = id;
  INSERT INTO call_shipping (id, log_id, last_seq, shipped_seq)
    VALUES (1, lower(hex(randomblob(8))), coalesce((SELECT max(id) FROM call), 0), 0);
  CREATE INDEX call_change ON call (change_seq);

  CREATE TRIGGER call_change_insert AFTER INSERT ON call
  BEGIN
    UPDATE call_shipping SET last_seq = last_seq + 1 WHERE id = 1;
    UPDATE call SET change_seq = (SELECT last_seq FROM call_shipping WHERE id = 1) WHERE id = NEW.id;
  END;
  CREATE TRIGGER call_change_update AFTER UPDATE ON call WHEN NEW.change_seq IS OLD.change_seq
  BEGIN
    UPDATE call_shipping SET last_seq = last_seq + 1 WHERE id = 1;
    UPDATE call SET change_seq = (SELECT last_seq FROM call_shipping WHERE id = 1) WHERE id = NEW.id;
  END;
  `,
];
