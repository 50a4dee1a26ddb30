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
];
