/**
 * Versioned schema. Each entry moves `PRAGMA user_version` from its index to
 * index + 1; entries are never edited once released, only appended.
 *
 * Liveness of a session is a matter of time (TTL, grace), so the database
 * cannot enforce "one live bridge per (caller, dialled)" by time alone. A
 * bridge carries `live`, cleared when its session is seen to have ended
 * (eagerly for the parties of every new session); the partial unique index
 * then backs the allocation invariant inside the database itself.
 *
 * Every party is the caller of one bridge in each of its sessions, so the
 * bridge key (caller, …) also answers "the sessions of this party": no
 * separate party indexes on session, fewer pages written per create.
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
  CREATE INDEX session_ends_at ON session (ends_at) WHERE ends_at IS NOT NULL;

  CREATE TABLE bridge (
    caller   TEXT NOT NULL,
    dialled  TEXT NOT NULL,
    sid      INTEGER NOT NULL REFERENCES session (sid),
    target   TEXT NOT NULL,
    cli      TEXT NOT NULL,
    live     INTEGER NOT NULL DEFAULT 1 CHECK (live IN (0, 1)),
    PRIMARY KEY (caller, dialled, sid)
  ) WITHOUT ROWID;
  CREATE UNIQUE INDEX bridge_live ON bridge (caller, dialled) WHERE live = 1;
  CREATE INDEX bridge_pair ON bridge (caller, target, sid);

  CREATE TABLE dial_history (
    caller        TEXT NOT NULL,
    dialled       TEXT NOT NULL,
    last_used_at  INTEGER NOT NULL,
    PRIMARY KEY (caller, dialled)
  ) WITHOUT ROWID;

  CREATE TABLE meta (
    key    TEXT PRIMARY KEY,
    value  INTEGER NOT NULL
  ) WITHOUT ROWID;
  INSERT INTO meta (key, value) VALUES ('pool_revision', 0);
  `,
];
