/**
 * Release with hang-up in cluster mode. Two PBX hosts (network namespaces),
 * each with its `vnum replica` (the built CLI) keeping its SQLite file equal
 * to PostgreSQL, `vnum api --authority` on host A, and on each node a `vnum
 * serve` over the node's file whose AMI is a fake manager
 * (test/support/fake-asterisk's FastAGI side places the calls; the fake AMI
 * in test/support/fake-ami.ts answers Hangup and sends the channel's Hangup
 * event, as Asterisk 22 does).
 *
 * A release with `"hangup": true` through the API writes its request on the
 * session's row; each node's `vnum serve` hangs up, through AMI, its own open
 * calls of that session that were in progress at the request, once: not
 * another session's call, not a call that started later in the grace. The
 * answer does not pretend to count the nodes' calls. Node B, cut off from
 * the network when the release happens, hangs up nothing until it heals,
 * then hangs up its call. A release without hangup hangs up nothing before
 * the session ends.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { expect, it } from 'vitest';
import { listCalls, type Call } from '../../src/calls/store.js';
import { openDb } from '../../src/store/db.js';
import { deploy, poolNumber, type CreatedJson, type Deployment } from '../support/cluster/api.js';
import { audit, eventually, sleep } from '../support/cluster/checks.js';
import { clusterSuite } from '../support/cluster/suite.js';
import { partyNumber } from '../support/cluster/writer.js';
import { FakeAmi } from '../support/fake-ami.js';
import { placeCallAs } from '../support/fake-asterisk.js';
import { startServe, type Serve } from '../support/serve.js';

/** The calls in a node's file, by Uniqueid. */
function callsIn(db: string): Record<string, Call> {
  const file = openDb(db, { readonly: true });
  try {
    return Object.fromEntries(listCalls(file, { limit: 100 }).calls.map((c) => [c.uniqueid, c]));
  } finally {
    file.close();
  }
}

/** A node's session.hangup_requested_at, as its replica has it. */
function requestIn(db: string, id: string): number | null {
  const file = openDb(db, { readonly: true });
  try {
    return file.prepare<[string], number | null>('SELECT hangup_requested_at FROM session WHERE id = ?').pluck().get(id) ?? null;
  } finally {
    file.close();
  }
}

interface NodeSide {
  fake: FakeAmi;
  serve: Serve;
  db: string;
  /** Places a bridged call on this node: its channel up in the fake Asterisk, then the router's FastAGI exchange. */
  call(uniqueid: string, session: CreatedJson, from: 0 | 1): Promise<void>;
  /** The Uniqueids AMI Hangup was sent for, in order. */
  hungUp(): string[];
}

clusterSuite('release with hang-up in cluster mode', (env) => {
  it("a release with hangup through the API on the authority: each node's vnum serve hangs up its own calls of that session in progress at the request, once, through AMI; a node cut off does it when it heals; a release without hangup hangs up nothing early", async () => {
    const d: Deployment = await deploy(env, { name: 'hang', pool: Array.from({ length: 12 }, (_, i) => poolNumber(300 + i)), apis: [0] });
    const [a, b] = d.pbxs as [Deployment['pbxs'][0], Deployment['pbxs'][0]];
    const api = a.client!;
    const sides: NodeSide[] = [];
    try {
      const create = async (id: string, n: number): Promise<CreatedJson> => {
        const made = await api.post<CreatedJson>('/v1/sessions', { id, parties: [{ number: partyNumber(n) }, { number: partyNumber(n + 1) }] });
        expect(made.status, JSON.stringify(made.body)).toBe(201);
        return made.body;
      };
      const hangup = await create('hangup', 1);
      const other = await create('other', 3);
      const plain = await create('plain', 5);
      await d.settle();

      for (const [i, p] of [a, b].entries()) {
        const fake = new FakeAmi({ secret: `node-${i}-secret`, hangupEvents: true });
        await fake.listen();
        const secretFile = join(env.dir, `ami-secret-${i}`);
        writeFileSync(secretFile, `node-${i}-secret\n`, { mode: 0o600 });
        // The router on the node's replica file, as on a PBX (the call log is the node's own).
        const serve = await startServe({
          db: p.db,
          env: { VNUM_AMI_USER: 'vnum', VNUM_AMI_SECRET_FILE: secretFile, VNUM_AMI_PORT: String(fake.port), VNUM_AUTHORITY: undefined },
        });
        const side: NodeSide = {
          fake,
          serve,
          db: p.db,
          async call(uniqueid, session, from) {
            const caller = session.parties[from]!;
            const callee = session.parties[1 - from]!;
            fake.channels.push({ channel: uniqueid, uniqueid, state: 'Up' });
            const command = await placeCallAs(serve.port, caller.number, callee.maskedAs, uniqueid, `PJSIP/carrier-${uniqueid.replace('.', '')}`);
            expect(command, `${uniqueid} on ${p.name}`).toContain('VNUM_STATUS=BRIDGE');
          },
          hungUp: () => fake.actions('hangup').map((action) => action.get('Channel')!),
        };
        sides.push(side);
        // Logged in, and its reconcile (which marks open calls Asterisk does not list as lost) behind it.
        await eventually(`AMI login on ${p.name}`, 10_000, () => (fake.authenticatedSessions() > 0 && fake.actions('coreshowchannels').length > 0 ? true : undefined));
        await sleep(200);
      }
      const [onA, onB] = sides as [NodeSide, NodeSide];
      const stamp = Math.floor(Date.now() / 1000);
      await onA.call(`${stamp}.1`, hangup, 0);
      await onA.call(`${stamp}.2`, other, 0);
      await onA.call(`${stamp}.3`, plain, 1);
      await onB.call(`${stamp}.11`, hangup, 1);
      await onB.call(`${stamp}.13`, plain, 0);
      await eventually('the calls in both call logs', 10_000, () =>
        Object.keys(callsIn(a.db)).length === 3 && Object.keys(callsIn(b.db)).length === 2 ? true : undefined,
      );

      // B is cut off from the network: its replica hears nothing of what follows.
      b.host.cut();
      // A release without hangup (grace: its calls go on).
      const plainReleased = await api.post<{ state: string; hangup?: unknown }>('/v1/sessions/plain/release', { grace: '30m' });
      expect(plainReleased.status).toBe(200);
      expect(plainReleased.body.state).toBe('grace');
      expect(plainReleased.body.hangup).toBeUndefined();
      // The release with hangup: answered at once (no wait: the calls are on the nodes), no invented counts.
      const before = Date.now();
      const released = await api.post<{ state: string; releasedAt: string; hangup: { requestedAt: string; requested: number | null; ended: number | null } }>(
        '/v1/sessions/hangup/release',
        { grace: '10m', hangup: true, wait: '5s' },
      );
      const answeredMs = Date.now() - before;
      expect(released.status, JSON.stringify(released.body)).toBe(200);
      expect(released.body).toMatchObject({ state: 'grace', hangup: { requested: null, ended: null } });
      expect(released.body.hangup.requestedAt).toBe(released.body.releasedAt);
      expect(answeredMs).toBeLessThan(5_000);
      const requestedAt = Date.parse(released.body.hangup.requestedAt);
      const { rows } = await d.pg.query<{ hangup_requested_at: string }>("SELECT hangup_requested_at FROM session WHERE id = 'hangup'");
      expect(Number(rows[0]!.hangup_requested_at)).toBe(requestedAt);

      // A: the request arrives by replication; its serve hangs up its call of that session, by Uniqueid, once.
      await eventually('A hangs up its call', 15_000, () => (onA.hungUp().length > 0 ? true : undefined));
      await eventually("A's call ended", 5_000, () => (callsIn(a.db)[`${stamp}.1`]?.state === 'ended' ? true : undefined));
      // A call of that session placed after the request (in the grace) connects and is not hung up by it.
      await onA.call(`${stamp}.4`, hangup, 1);
      await sleep(2_500); // five hang-up checks, past the 2 s retry
      expect(onA.hungUp()).toEqual([`${stamp}.1`]);
      const logA = callsIn(a.db);
      expect(logA[`${stamp}.1`]).toMatchObject({ state: 'ended', hangupReason: 'release', hangupRequestedAt: requestedAt, hangupCause: 16 });
      for (const id of ['2', '3', '4']) expect(logA[`${stamp}.${id}`], id).toMatchObject({ state: 'routed', hangupReason: null });

      // B, cut off: nothing yet (its replica does not have the request).
      expect(requestIn(b.db, 'hangup')).toBeNull();
      expect(onB.hungUp()).toEqual([]);
      expect(callsIn(b.db)[`${stamp}.11`]).toMatchObject({ state: 'routed', hangupReason: null });

      // Healed: B catches up, and hangs up its call of that session, not the other one.
      b.host.heal();
      await eventually('B catches up', 30_000, () => (requestIn(b.db, 'hangup') === requestedAt ? true : undefined));
      await eventually('B hangs up its call', 10_000, () => (onB.hungUp().length > 0 ? true : undefined));
      await eventually("B's call ended", 5_000, () => (callsIn(b.db)[`${stamp}.11`]?.state === 'ended' ? true : undefined));
      await sleep(2_500);
      expect(onB.hungUp()).toEqual([`${stamp}.11`]);
      const logB = callsIn(b.db);
      expect(logB[`${stamp}.11`]).toMatchObject({ state: 'ended', hangupReason: 'release', hangupRequestedAt: requestedAt });
      expect(logB[`${stamp}.13`]).toMatchObject({ state: 'routed', hangupReason: null });
      // And still nothing more on A.
      expect(onA.hungUp()).toEqual([`${stamp}.1`]);

      // Both replicas equal to the authority, the request included.
      await d.settle();
      for (const p of d.pbxs) {
        const report = await audit(d.target, p.db);
        expect(report.equal, `${p.name}: ${report.text}`).toBe(true);
      }
    } finally {
      for (const side of sides) {
        await side.serve.stop();
        await side.fake.stop();
      }
      b.host.heal();
      await d.stop();
    }
  }, 240_000);
}, { hosts: 2 });
