/**
 * The call log on the authority (issue 15): two nodes, each with its replica
 * process (test/support/cluster/replica-worker.mjs) and the built `vnum
 * serve --authority` over its file, whose AMI is the fake manager
 * (test/support/fake-ami.ts: the test sends DialEnd and Hangup as Asterisk
 * would). Each node writes its calls into its own file as a single box does
 * and ships them to PostgreSQL in the background (src/calls/shipping.ts):
 *
 * - calls on both nodes reach call_log with their states, and GET /v1/calls
 *   on `vnum api --authority` and `vnum calls --authority` show them as the
 *   nodes' own call logs do (the authority's ids, unique across nodes), with
 *   the single box's filters and pages; GET /v1/health shows both nodes'
 *   routers; webhook recording on, each call's events are in webhook_event
 *   exactly once (node B's serve connects as a role granted only what
 *   docs/cluster.md grants a node);
 * - PostgreSQL stopped while calls happen: the calls still bridge at once,
 *   the backlog grows and failures are counted on /metrics; back, every
 *   change ships, once: the authority's rows equal the node's;
 * - a node's `vnum serve` SIGKILLed in the middle of shipping a backlog of
 *   3,000 calls: started again, it ships from its cursor; nothing lost,
 *   nothing doubled.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type pg from 'pg';
import { expect, it } from 'vitest';
import { openPostgresAuthority } from '../../src/authority/postgres.js';
import { callJson } from '../../src/calls/json.js';
import { listCalls } from '../../src/calls/store.js';
import type { PgTarget } from '../../src/replica/stream.js';
import { partyInput, type CreateSessionInput, type Session } from '../../src/session/sessions.js';
import { openDb } from '../../src/store/db.js';
import { setPgRecording } from '../../src/webhooks/pg-outbox.js';
import { ApiClient, startApi, type ApiProcess } from '../support/api.js';
import { vnum } from '../support/cli.js';
import { barrier, eventually, sleep } from '../support/cluster/checks.js';
import { startNode, type NodeProcess } from '../support/cluster/node.js';
import { clusterSuite } from '../support/cluster/suite.js';
import { partyNumber } from '../support/cluster/writer.js';
import { scrape } from '../support/exposition.js';
import { FakeAmi } from '../support/fake-ami.js';
import { placeCallAs } from '../support/fake-asterisk.js';
import { freePort } from '../support/net.js';
import { startServe, type Serve } from '../support/serve.js';

const url = (t: PgTarget): string => `postgres://${t.user}@${t.host}:${t.port}/${t.database}`;
const quietEnv = { VNUM_LOG_LEVEL: undefined, VNUM_LOG_REDACT: undefined, VNUM_DEFAULT_COUNTRY: 'GB' };

function input(id: string, first: string, second: string, now: number): CreateSessionInput {
  return { id, first: partyInput(first, undefined, 'GB'), second: partyInput(second, undefined, 'GB'), now, ttlMs: 3_600_000 };
}

/** The call log's columns as both sides hold them (the node's id is node_call_id on the authority). */
const COLUMNS =
  'change_seq, uniqueid, channel, session_id, caller, started_at, ringing_at, answered_at, ended_at, lost_at, dial_status, hangup_cause, ' +
  'hangup_cause_text, callee_uniqueid, hangup_requested_at, hangup_reason, via, recording_path, recording_bytes, recording_deleted_at';

/** A node's call rows in its file, by its id. */
function fileRows(db: string): Array<Record<string, unknown>> {
  const file = openDb(db, { readonly: true });
  try {
    return file.prepare(`SELECT id, ${COLUMNS} FROM call ORDER BY id`).all() as Array<Record<string, unknown>>;
  } finally {
    file.close();
  }
}

/** The same rows on the authority, as JSON (bigints as numbers), by the node's id. */
async function authorityRows(client: pg.Client, node: string): Promise<Array<Record<string, unknown>>> {
  const { rows } = await client.query<{ r: Record<string, unknown> }>(
    `SELECT row_to_json(c) AS r FROM (SELECT node_call_id AS id, ${COLUMNS} FROM call_log WHERE node = $1 ORDER BY node_call_id) c`,
    [node],
  );
  return rows.map((row) => row.r);
}

/** The node's own call log as `vnum calls --json` shows it, by Uniqueid. */
function localCalls(db: string): Map<string, ReturnType<typeof callJson>> {
  const file = openDb(db, { readonly: true });
  try {
    return new Map(listCalls(file, { limit: 100_000 }).calls.map((c) => [c.uniqueid, callJson(c)]));
  } finally {
    file.close();
  }
}

async function shippingMetrics(port: number): Promise<{ shipped: number; failures: number; backlog: number | undefined }> {
  const m = await scrape(`http://127.0.0.1:${port}/metrics`);
  return { shipped: m.get('vnum_call_log_shipped_total') ?? -1, failures: m.get('vnum_call_log_ship_failures_total') ?? -1, backlog: m.get('vnum_call_log_ship_backlog') };
}

interface Side {
  name: string;
  db: string;
  node: NodeProcess;
  fake: FakeAmi;
  serve: Serve;
  metricsPort: number;
  secretFile: string;
}

const stamp = (ms: number) => (ms / 1000).toFixed(3);

clusterSuite('the call log on the authority', (env) => {
  it("calls on two nodes reach PostgreSQL and show through GET /v1/calls and vnum calls --authority with their states; PostgreSQL stopped costs no call and everything ships once when it is back; a serve SIGKILLed mid-shipment loses and doubles nothing; each call's webhook events are recorded once", async () => {
    const { target, client: first } = await env.authority();
    let client = first;
    await setPgRecording(client, true, Date.now());
    const authority = await openPostgresAuthority(target);
    const sides: Side[] = [];
    let api: ApiProcess | undefined;
    // B's serve connects as a role granted what docs/cluster.md grants a node for shipping, and no more.
    await client.query('CREATE ROLE calls_node LOGIN');
    await client.query('GRANT SELECT, INSERT, UPDATE ON call_log, router_report, node_shipping TO calls_node');
    await client.query('GRANT SELECT ON session, bridge, webhook_outbox TO calls_node');
    await client.query('GRANT SELECT, INSERT ON webhook_event TO calls_node');
    await client.query('GRANT USAGE ON SEQUENCE webhook_event_seq_seq TO calls_node');
    await client.query('GRANT SELECT, UPDATE ON webhook_counter TO calls_node');
    const startSide = async (side: Omit<Side, 'serve'>): Promise<Serve> =>
      startServe({
        db: side.db,
        args: ['--authority', url(side.name === 'calls_b' ? { ...target, user: 'calls_node' } : target), '--metrics-port', String(side.metricsPort)],
        env: { VNUM_AMI_USER: 'vnum', VNUM_AMI_SECRET_FILE: side.secretFile, VNUM_AMI_PORT: String(side.fake.port) },
      });
    try {
      for (const name of ['calls_a', 'calls_b']) {
        const db = join(env.dir, `${name}.db`);
        const node = startNode({ db, target, node: name, pingIntervalMs: 200 });
        await node.waitForStatus((s) => s.phase === 'streaming', 30_000, 'streaming');
        const fake = new FakeAmi({ secret: `${name}-secret` });
        await fake.listen();
        const secretFile = join(env.dir, `${name}-ami-secret`);
        writeFileSync(secretFile, `${name}-secret\n`, { mode: 0o600 });
        const partial = { name, db, node, fake, metricsPort: await freePort(), secretFile };
        const serve = await startSide(partial);
        sides.push({ ...partial, serve });
        await eventually(`AMI login on ${name}`, 10_000, () => (fake.authenticatedSessions() > 0 && fake.actions('coreshowchannels').length > 0 ? true : undefined));
      }
      const [a, b] = sides as [Side, Side];
      const t0 = Date.now();
      const one = (await authority.createSession(input('one', partyNumber(1), partyNumber(2), t0))).session;
      const two = (await authority.createSession(input('two', partyNumber(3), partyNumber(4), t0))).session;
      const three = (await authority.createSession(input('three', partyNumber(5), partyNumber(6), t0))).session;
      await authority.releaseSession('three', 0, Date.now(), { hangup: false });
      await barrier(client, [a.db, b.db]);

      /** A bridged call on a node, answered and ended when asked (the AMI events Asterisk sends). */
      const call = async (side: Side, uniqueid: string, session: Session, opts: { answer?: boolean; hangup?: boolean } = {}): Promise<number> => {
        const [caller, callee] = session.parties;
        side.fake.channels.push({ channel: `PJSIP/carrier-${uniqueid}`, uniqueid, state: 'Up' });
        const before = Date.now();
        const answer = await placeCallAs(side.serve.port, caller.number, callee.maskedAs, uniqueid);
        const took = Date.now() - before;
        expect(answer, `${uniqueid} on ${side.name}`).toContain('VNUM_STATUS=BRIDGE');
        if (opts.answer) side.fake.event('DialEnd', 'call', [['Timestamp', stamp(Date.now())], ['Uniqueid', uniqueid], ['DialStatus', 'ANSWER']]);
        if (opts.hangup) side.fake.event('Hangup', 'call', [['Timestamp', stamp(Date.now() + 1)], ['Uniqueid', uniqueid], ['Cause', '16'], ['Cause-txt', 'Normal Clearing']]);
        return took;
      };
      const base = Math.floor(Date.now() / 1000);
      await call(a, `${base}.1`, one, { answer: true, hangup: true });
      await call(a, `${base}.2`, two, { answer: true });
      await call(b, `${base}.11`, one);
      await call(b, `${base}.12`, two, { answer: true, hangup: true });
      const states = { [`${base}.1`]: 'ended', [`${base}.2`]: 'answered', [`${base}.11`]: 'routed', [`${base}.12`]: 'ended' };
      const local = () => new Map([...localCalls(a.db), ...localCalls(b.db)]);
      await eventually('the calls in both files', 10_000, () => ([...local().values()].map((c) => c.state).sort().join() === 'answered,ended,ended,routed' ? true : undefined));

      // The API on the authority.
      const made = vnum(['apikey', 'create', '--name', 'calls', '--scope', 'admin', '--json', '--authority', url(target)], quietEnv);
      expect(made.code, made.stderr).toBe(0);
      api = await startApi({ db: join(env.dir, 'unused.db'), env: { VNUM_AUTHORITY: url(target), VNUM_LOG_LEVEL: 'info' }, args: ['--rate-limit', '0'] });
      const http = new ApiClient(api.url, JSON.parse(made.stdout).key);
      type Page = { calls: Array<ReturnType<typeof callJson>>; next: string | null; watching: boolean };
      let last: unknown;
      const page = await eventually('all four calls on the authority, in their states', 15_000, async () => {
        const got = await http.get<Page>('/v1/calls');
        last = got.body;
        expect(got.status).toBe(200);
        return got.body.calls.length === 4 && got.body.calls.every((c) => c.state === states[c.uniqueid]) ? got.body : undefined;
      }).catch((error: Error) => {
        throw new Error(`${error.message}: ${JSON.stringify(last)}\n${sides.map((s) => s.serve.lines().filter((l) => /ship|warn|error/i.test(l)).slice(-5).join('\n')).join('\n')}`);
      });
      // Each call as the node's own log shows it, but for its id: the authority's, unique across the nodes.
      const mine = local();
      for (const c of page.calls) expect(c).toEqual({ ...mine.get(c.uniqueid)!, id: c.id });
      expect(new Set(page.calls.map((c) => c.id)).size).toBe(4);
      expect(page.calls.map((c) => c.id)).toEqual([...page.calls.map((c) => c.id)].sort((x, y) => y - x));
      expect(page.watching).toBe(true);
      // The single box's filters and pages.
      const first3 = (await http.get<Page>('/v1/calls?limit=3')).body;
      expect(first3.calls).toEqual(page.calls.slice(0, 3));
      const rest = (await http.get<Page>(`/v1/calls?limit=3&cursor=${encodeURIComponent(first3.next!)}`)).body;
      expect(rest).toMatchObject({ calls: page.calls.slice(3), next: null });
      expect((await http.get<Page>('/v1/calls?session=one')).body.calls.map((c) => c.uniqueid).sort()).toEqual([`${base}.1`, `${base}.11`]);
      expect((await http.get<Page>('/v1/calls?live=true')).body.calls.map((c) => c.uniqueid).sort()).toEqual([`${base}.11`, `${base}.2`]);
      // The CLI on the authority: the same calls.
      const cli = vnum(['calls', '--json', '--authority', url(target)], quietEnv);
      expect(cli.code, cli.stderr).toBe(0);
      expect(JSON.parse(cli.stdout)).toEqual(page.calls);
      const text = vnum(['calls', '--session', 'two', '--authority', url(target)], quietEnv);
      expect(text.code, text.stderr).toBe(0);
      expect(text.stdout).toMatch(/two\s+first\s+answered/);
      // Every node's router, from their shipped reports.
      const health = await http.get<{ healthy: boolean; routers: Array<{ address: string; ok: boolean }> }>('/v1/health');
      expect(health.status, JSON.stringify(health.body)).toBe(200);
      expect(health.body.routers.map((r) => [r.address.replace(/:\d+$/, ':P'), r.ok])).toEqual([['calls_a/127.0.0.1:P', true], ['calls_b/127.0.0.1:P', true]]);
      // vnum cluster status: each node's shipping position.
      const status = vnum(['cluster', 'status', '--json', '--authority', url(target)], quietEnv);
      expect(status.code, status.stderr).toBe(0);
      expect(JSON.parse(status.stdout).nodes.map((n: { node: string; callLogBacklog: number }) => [n.node, n.callLogBacklog])).toEqual([['calls_a', 0], ['calls_b', 0]]);

      // A call refused on B (its session released): call.refused, queued on the node, shipped to the authority's outbox.
      const refused = await placeCallAs(b.serve.port, three.parties[0].number, three.parties[1].maskedAs, `${base}.99`);
      expect(refused).toContain('VNUM_STATUS=ENDED');

      // PostgreSQL stopped while calls happen on A: they bridge at once; the backlog grows, failures are counted.
      await client.end();
      env.cluster.stopServer('fast');
      const during: number[] = [];
      for (let i = 0; i < 6; i++) during.push(await call(a, `${base}.${20 + i}`, i % 2 ? one : two, { answer: true, hangup: i < 4 }));
      expect(Math.max(...during)).toBeLessThan(1_000);
      const cut = await eventually('failures counted and a backlog on A', 15_000, async () => {
        const m = await shippingMetrics(a.metricsPort);
        return m.failures > 0 && (m.backlog ?? 0) >= 6 ? m : undefined;
      });
      await env.cluster.startServer();
      client = env.cluster.client(target);
      await client.connect();
      await eventually('A caught up: its backlog shipped', 30_000, async () => ((await shippingMetrics(a.metricsPort)).backlog === 0 ? true : undefined));
      for (const side of sides) expect(await authorityRows(client, side.name)).toEqual(fileRows(side.db));
      console.log(`calls on the authority: 6 calls with PostgreSQL stopped, routed in at most ${Math.max(...during)} ms; backlog ${cut.backlog}, ${cut.failures} failed shipments, then shipped`);

      // A's serve SIGKILLed in the middle of shipping a backlog: 3,000 calls its file logged while it was stopped.
      expect(await a.serve.stop()).toBe(0);
      // Its stop shipped its router's last report: stopped on purpose, as GET /v1/health then says.
      const { rows: reportA } = await client.query<{ ami_state: string }>("SELECT ami_state FROM router_report WHERE node = 'calls_a'");
      expect(reportA.map((r) => r.ami_state)).toEqual(['stopped']);
      const file = openDb(a.db);
      try {
        file.transaction(() => {
          const insert = file.prepare("INSERT INTO call (uniqueid, channel, session_id, caller, started_at) VALUES (?, 'PJSIP/bulk', 'one', 'first', ?)");
          for (let i = 0; i < 3_000; i++) insert.run(`${base + 1}.${i}`, Date.now());
          file.prepare("UPDATE call SET ended_at = started_at + 1000 WHERE channel = 'PJSIP/bulk'").run();
        })();
      } finally {
        file.close();
      }
      const shippedBefore = Number((await client.query<{ s: string }>("SELECT shipped_seq AS s FROM node_shipping WHERE node = 'calls_a'")).rows[0]!.s);
      a.serve = await startSide(a);
      let killedAt: { shipped: number; backlog: number } | undefined;
      const deadline = Date.now() + 20_000;
      while (Date.now() < deadline) {
        const { rows } = await client.query<{ s: string; b: string }>("SELECT shipped_seq AS s, backlog AS b FROM node_shipping WHERE node = 'calls_a'");
        const shipped = Number(rows[0]!.s);
        if (shipped > shippedBefore) {
          a.serve.child.kill('SIGKILL');
          killedAt = { shipped, backlog: Number(rows[0]!.b) };
          break;
        }
        await sleep(2);
      }
      expect(killedAt, 'the shipper was seen mid-way').toBeDefined();
      expect(killedAt!.backlog).toBeGreaterThan(0);
      await sleep(200);
      const partway = (await client.query<{ n: number }>("SELECT count(*)::int AS n FROM call_log WHERE node = 'calls_a'")).rows[0]!.n;
      a.serve = await startSide(a);
      await eventually('A shipped everything after its restart', 60_000, async () => ((await shippingMetrics(a.metricsPort)).backlog === 0 ? true : undefined));
      const rowsA = fileRows(a.db);
      expect(await authorityRows(client, 'calls_a')).toEqual(rowsA);
      expect((await client.query<{ n: number }>("SELECT count(*)::int AS n FROM call_log WHERE node = 'calls_a'")).rows[0]!.n).toBe(rowsA.length);
      console.log(`calls on the authority: SIGKILL with ${partway} of ${rowsA.length} of A's calls on the authority (backlog ${killedAt!.backlog} changes); after the restart all ${rowsA.length}, each once`);

      // Webhook recording was on: every call's events, each exactly once (the bulk calls too: bridged and ended).
      // (The sessions' own events are the creates' on the authority, webhooks-pg-outbox.test.ts's.)
      const { rows: events } = await client.query<{ type: string; uniqueid: string; n: number }>(
        "SELECT type, data::jsonb->'call'->>'uniqueid' AS uniqueid, count(*)::int AS n FROM webhook_event WHERE type LIKE 'call.%' GROUP BY 1, 2",
      );
      const doubled = events.filter((e) => e.n !== 1);
      expect(doubled).toEqual([]);
      const of = (uid: string) => events.filter((e) => e.uniqueid === uid).map((e) => e.type).sort();
      expect(of(`${base}.1`)).toEqual(['call.answered', 'call.bridged', 'call.ended']);
      expect(of(`${base}.2`)).toEqual(['call.answered', 'call.bridged']);
      expect(of(`${base}.11`)).toEqual(['call.bridged']);
      expect(of(`${base}.12`)).toEqual(['call.answered', 'call.bridged', 'call.ended']);
      for (let i = 0; i < 6; i++) expect(of(`${base}.${20 + i}`)).toEqual(i < 4 ? ['call.answered', 'call.bridged', 'call.ended'] : ['call.answered', 'call.bridged']);
      expect(of(`${base + 1}.0`)).toEqual(['call.bridged', 'call.ended']);
      const { rows: refusals } = await client.query<{ session_id: string; data: { call: Record<string, unknown> } }>(
        "SELECT session_id, data::jsonb AS data FROM webhook_event WHERE type = 'call.refused'",
      );
      expect(refusals).toEqual([
        { session_id: 'three', data: { call: { uniqueid: `${base}.99`, caller: 'first', dialled: three.parties[1].maskedAs, reason: 'session-ended' } } },
      ]);
      expect(events.filter((e) => e.uniqueid.startsWith(`${base + 1}.`)).reduce((n, e) => n + e.n, 0)).toBe(6_000);
      // data.call is the call as GET /v1/calls shows it, with its masked numbers.
      const { rows: sample } = await client.query<{ data: { call: Record<string, unknown> } }>(
        "SELECT data::jsonb AS data FROM webhook_event WHERE type = 'call.ended' AND data::jsonb->'call'->>'uniqueid' = $1",
        [`${base}.1`],
      );
      const shown = page.calls.find((c) => c.uniqueid === `${base}.1`)!;
      expect(sample[0]!.data.call).toMatchObject({ ...shown, dialled: one.parties[1].maskedAs, presented: one.parties[0].maskedAs });
    } finally {
      await api?.stop();
      for (const side of sides) {
        await side.serve.stop();
        await side.fake.stop();
        await side.node.stop();
      }
      await authority.close();
      await client.end().catch(() => {});
    }
  }, 240_000);
});
