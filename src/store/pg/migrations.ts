/**
 * The PostgreSQL schema of cluster mode (the authority), versioned like the
 * SQLite one (src/store/migrations.ts): each entry moves
 * vnum_schema.version from its index to index + 1; entries are never edited
 * once released, only appended.
 *
 * Tables and columns carry the SQLite names, because each node's replica is
 * the single-box SQLite schema and the replica applies changes by table and
 * column name (src/replica/apply.ts). A table joins the replica by joining
 * the publication in its migration (`ALTER PUBLICATION vnum_replica ADD
 * TABLE ...`), and the same table must exist in the SQLite migrations; a
 * table kept out of it (e.g. an outbox, API keys) stays on the authority.
 * Types the replica takes: see src/replica/values.ts. Times are bigint ms
 * since the epoch, as in SQLite; ids are bigint identities.
 */

/** The publication every node's slot follows. */
export const PUBLICATION = 'vnum_replica';

export const PG_MIGRATIONS: readonly string[] = [
  // 1: the single box's pool, sessions, bridges and meta (SQLite migration 1),
  // published to the nodes. The call log and router_status stay local to
  // each node for now.
  `
  CREATE TABLE pool_number (
    number    text PRIMARY KEY,
    country   text NOT NULL,
    state     text NOT NULL CHECK (state IN ('available', 'reserved', 'retired')),
    added_at  bigint NOT NULL
  );

  CREATE TABLE session (
    sid               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id                text NOT NULL UNIQUE,
    first_party       text NOT NULL,
    first_masked_as   text NOT NULL,
    second_party      text NOT NULL,
    second_masked_as  text NOT NULL,
    created_at        bigint NOT NULL,
    expires_at        bigint,
    released_at       bigint,
    ends_at           bigint,
    CHECK (first_party <> second_party)
  );

  CREATE TABLE bridge (
    caller   text NOT NULL,
    dialled  text NOT NULL,
    sid      bigint NOT NULL REFERENCES session (sid),
    target   text NOT NULL,
    lent_at  bigint NOT NULL,
    ends_at  bigint,
    PRIMARY KEY (caller, dialled)
  );

  CREATE TABLE meta (
    key    text PRIMARY KEY,
    value  bigint NOT NULL
  );
  INSERT INTO meta (key, value) VALUES ('pool_revision', 0);

  CREATE PUBLICATION vnum_replica FOR TABLE pool_number, session, bridge, meta;
  `,
  // 2: the number-type policy at routing time (issue 11; SQLite migration 3).
  // The target's type code (src/numbers/type.ts) travels with the bridge, so
  // a node judges the policy from its replica exactly as a single box does.
  // NULL: the router classifies the target itself. A new column of a
  // published table needs no rebuild: the next change to a bridge carries it.
  `
  ALTER TABLE bridge ADD COLUMN target_type integer;
  `,
  // 3: each node's own report of its replica (src/replica/report.ts), which
  // `vnum cluster status` shows beside pg_replication_slots. Kept out of the
  // publication: it concerns the authority's operators, not the routing.
  // reported_at is the authority's clock (no skew between hosts); lag_ms is
  // how old the node's view was by the node's own clock when it reported.
  `
  CREATE TABLE node_report (
    node             text PRIMARY KEY,
    host             text NOT NULL,
    pid              integer NOT NULL,
    version          text NOT NULL,
    phase            text NOT NULL,
    applied_lsn      pg_lsn,
    lag_ms           bigint,
    lag_bytes        bigint,
    last_error       text,
    reported_at      bigint NOT NULL
  );
  `,
  // 4: what the single box gained in issues 13 and 14 (SQLite migrations 5,
  // 6, 8 and 9), so the HTTP API runs on the authority (src/authority/postgres.ts).
  // Published, because a node routes from them: the session's idle timeout and
  // call settings (columns of a published table travel with its rows), each
  // pool number's out-of-session handling, the PINs and the PIN key. The key
  // must be on the node: its router computes the HMAC of a PIN typed there.
  // It is therefore in every node's replica file, which is owner-only (0600)
  // like the single box's and already holds every real number; it is made
  // here, before any node copies the publication, so a node only ever gets it
  // with its snapshot (the node's own SQLite migration made a key of its own,
  // which the copy replaces). 32 bytes from two gen_random_uuid() (PostgreSQL's
  // strong random source; 244 random bits; pgcrypto is not needed).
  // Kept on the authority: API keys (only their SHA-256 is stored) and the
  // numbers a sync retired (only a sync reads them). The party indexes serve
  // the API's list by party, as SQLite migration 5's do.
  `
  ALTER TABLE session ADD COLUMN idle_ms bigint;
  ALTER TABLE session ADD COLUMN call_settings text;
  CREATE INDEX session_first_party ON session (first_party, sid);
  CREATE INDEX session_second_party ON session (second_party, sid);

  ALTER TABLE pool_number ADD COLUMN pin_mode text CHECK (pin_mode IN ('off', 'withheld', 'all'));
  ALTER TABLE pool_number ADD COLUMN out_of_session text CHECK (out_of_session IN ('announce', 'fallback'));
  ALTER TABLE pool_number ADD COLUMN fallback text;

  CREATE TABLE pin_key (
    id   integer PRIMARY KEY CHECK (id = 1),
    key  bytea NOT NULL CHECK (length(key) = 32)
  );
  INSERT INTO pin_key (id, key)
    VALUES (1, decode(replace(gen_random_uuid()::text || gen_random_uuid()::text, '-', ''), 'hex'));

  CREATE TABLE pin (
    dialled  text NOT NULL,
    digest   bytea NOT NULL,
    caller   text NOT NULL,
    sid      bigint NOT NULL REFERENCES session (sid),
    PRIMARY KEY (dialled, digest)
  );

  CREATE TABLE pool_retired_by_sync (
    number      text PRIMARY KEY REFERENCES pool_number (number),
    retired_at  bigint NOT NULL
  );

  CREATE TABLE api_key (
    id             text PRIMARY KEY,
    name           text NOT NULL,
    scopes         text NOT NULL,
    secret_sha256  bytea NOT NULL,
    created_at     bigint NOT NULL,
    revoked_at     bigint,
    last_used_at   bigint
  );
  CREATE UNIQUE INDEX api_key_name ON api_key (name) WHERE revoked_at IS NULL;

  ALTER PUBLICATION vnum_replica ADD TABLE pin_key, pin;
  `,
  // 5: each number's PIN tally and sweep cursor (SQLite migration 10,
  // src/session/pin.ts): a create reads and moves one row per masked number
  // instead of visiting every PIN of the number. Kept on the authority: only
  // creates use it, and a node never issues a PIN.
  `
  CREATE TABLE pin_tally (
    dialled   text PRIMARY KEY,
    pins      integer NOT NULL CHECK (pins >= 0),
    swept_to  bytea
  );
  INSERT INTO pin_tally (dialled, pins) SELECT dialled, count(*) FROM pin GROUP BY dialled;
  `,
  // 6: a release's hang-up request (SQLite migration 11): the time of the
  // latest release with hangup, on the session's row, so it reaches every
  // node through the publication the session is already in; each node's
  // vnum serve hangs up its own open calls of the session that started at or
  // before it. No new table, no new network path.
  `
  ALTER TABLE session ADD COLUMN hangup_requested_at bigint;
  `,
  // 7: the webhook outbox (issue 15; the single box's SQLite migration 7,
  // src/webhooks/pg-outbox.ts): the same tables, columns and states, written
  // in the transaction of the fact (a create, a release, a node's shipped
  // call log) by whichever process commits it, and read by any number of
  // `vnum webhooks deliver --authority` (claims are FOR UPDATE SKIP LOCKED
  // leases). `seq` is the write order; within a session it is also the
  // commit order, because an append holds the session's lane lock (an
  // advisory lock) until it commits. What the single box keeps in meta
  // (recording_since, ends_reported_to) is the one row of webhook_outbox:
  // meta is published, and nodes have no use for the outbox. None of these
  // tables joins the publication: the outbox lives on the authority only.
  `
  CREATE TABLE webhook_event (
    seq              bigserial PRIMARY KEY,
    id               text NOT NULL,
    type             text NOT NULL,
    session_id       text,
    occurred_at      bigint NOT NULL,
    recorded_at      bigint NOT NULL,
    data             text NOT NULL,
    state            text NOT NULL CHECK (state IN ('queued', 'pending', 'parked', 'delivered', 'discarded')),
    attempts         integer NOT NULL DEFAULT 0,
    next_at          bigint,
    first_failed_at  bigint,
    last_error       text,
    parked_at        bigint,
    done_at          bigint
  );
  CREATE INDEX webhook_event_open ON webhook_event (session_id, seq) WHERE done_at IS NULL;
  CREATE INDEX webhook_event_due ON webhook_event (next_at) WHERE state = 'pending';
  CREATE INDEX webhook_event_parked ON webhook_event (seq) WHERE state = 'parked';

  CREATE TABLE webhook_session_end (
    ends_at     bigint NOT NULL,
    session_id  text NOT NULL,
    PRIMARY KEY (ends_at, session_id)
  );

  CREATE TABLE webhook_counter (
    name   text PRIMARY KEY,
    value  bigint NOT NULL
  );
  INSERT INTO webhook_counter (name, value) VALUES
    ('delivered', 0), ('failed_attempts', 0), ('parked', 0), ('discarded', 0),
    ('refusals_dropped', 0), ('refused_no_session', 0), ('refused_invalid_caller', 0);

  CREATE TABLE webhook_outbox (
    one                boolean PRIMARY KEY DEFAULT true CHECK (one),
    recording_since    bigint NOT NULL DEFAULT 0,
    ends_reported_to   bigint NOT NULL DEFAULT 0
  );
  INSERT INTO webhook_outbox DEFAULT VALUES;

  CREATE TABLE webhook_deliverer (
    instance    text PRIMARY KEY,
    url         text NOT NULL,
    pid         integer NOT NULL,
    started_at  bigint NOT NULL,
    updated_at  bigint NOT NULL,
    in_flight   integer NOT NULL,
    last_error  text,
    stopped     boolean NOT NULL DEFAULT false
  );
  `,
  // 8: the nodes' call logs and routers' reports (issue 15; src/calls/shipping.ts
  // ships them from each node's file, src/authority/pg-calls.ts writes and reads
  // them). Kept out of the publication: they come from the nodes, not to them.
  // `call_log` has one row per call of a node's log, keyed by (node, log_id,
  // node_call_id): log_id names the node's file (SQLite call_shipping.log_id),
  // so a file made anew does not collide with its old rows; `id` is the
  // authority's own and is the call's id in GET /v1/calls and `vnum calls
  // --authority` (unique across nodes). A row moves only forward: a shipment
  // carries each call's change_seq and an older one never overwrites a newer.
  // `router_report`: each node's routers' own reports (SQLite router_status),
  // for GET /v1/health. `node_shipping`: how far each node's log has shipped,
  // and the last of its queued events (event_to_ship.seq) the authority took.
  `
  CREATE TABLE call_log (
    id                   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    node                 text NOT NULL,
    log_id               text NOT NULL,
    node_call_id         bigint NOT NULL,
    change_seq           bigint NOT NULL,
    uniqueid             text NOT NULL,
    channel              text NOT NULL,
    session_id           text NOT NULL,
    caller               text NOT NULL CHECK (caller IN ('first', 'second')),
    started_at           bigint NOT NULL,
    ringing_at           bigint,
    answered_at          bigint,
    ended_at             bigint,
    lost_at              bigint,
    dial_status          text,
    hangup_cause         integer,
    hangup_cause_text    text,
    callee_uniqueid      text,
    hangup_requested_at  bigint,
    hangup_reason        text CHECK (hangup_reason IN ('release', 'session-ended')),
    via                  text CHECK (via IN ('pin')),
    recording_path       text,
    recording_bytes      bigint,
    recording_deleted_at bigint,
    shipped_at           bigint NOT NULL,
    UNIQUE (node, log_id, node_call_id)
  );
  CREATE INDEX call_log_session ON call_log (session_id, id);
  CREATE INDEX call_log_started ON call_log (started_at);
  CREATE INDEX call_log_open ON call_log (session_id) WHERE ended_at IS NULL AND lost_at IS NULL;

  CREATE TABLE router_report (
    node              text NOT NULL,
    router            text NOT NULL,
    pid               integer NOT NULL,
    started_at        bigint NOT NULL,
    updated_at        bigint NOT NULL,
    ami_state         text NOT NULL,
    ami_since         bigint,
    ami_error         text,
    asterisk_version  text,
    PRIMARY KEY (node, router)
  );

  CREATE TABLE node_shipping (
    node         text PRIMARY KEY,
    log_id       text NOT NULL,
    shipped_seq  bigint NOT NULL,
    shipped_at   bigint NOT NULL,
    backlog      bigint NOT NULL,
    event_seq    bigint NOT NULL DEFAULT 0
  );
  `,
];
