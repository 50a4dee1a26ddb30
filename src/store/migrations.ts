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
  // PINs and out-of-session handling (src/session/pin.ts, src/routing/out-of-session.ts).
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
  // Sliding TTL, call shaping, recordings (issue 14). `idle_ms`: a session
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
];
