/**
 * Issue 15 end to end with a real call: a masked call carried by a real
 * Asterisk 22 on node A whose session was created through node B's API.
 *
 *   order system --HTTP--> vnum api --authority (netns host B) --SQL--> PostgreSQL
 *   PostgreSQL --logical replication--> vnum replica (netns host A) --> A's SQLite file
 *   carrier-in (sipp) --INVITE--> Asterisk 22 (dialplan/vnum.conf) --FastAGI--> vnum serve (A's file)
 *   Asterisk --INVITE--> carrier-out (sipp): the agent's real number, the customer's masked number shown
 *
 * Asterisk, sipp and A's router run in this machine's namespace on the
 * e2e harness's fixed ports (taken through its machine-wide lock); node A's
 * replica process runs in its own host and fills the file the router reads.
 * Node A has no API of its own: nothing reaches its file but replication.
 *
 * Then release with hang-up: a live call on A (AMI on, the shipped
 * manager.sample.conf; A's router logged in as its AMI user) is torn down by
 * a release with `"hangup": true` through B's API, the request reaching A
 * only through replication: both carriers get a BYE.
 */
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { listCalls, readRouterStatus, type Call } from '../../src/calls/store.js';
import { openDb } from '../../src/store/db.js';
import { Asterisk, sampleManagerConf } from '../support/asterisk/asterisk.js';
import { ports } from '../support/asterisk/paths.js';
import { authorityUrl, deploy, routableOnFile, routableWithin, type CreatedJson } from '../support/cluster/api.js';
import { audit, eventually } from '../support/cluster/checks.js';
import { callJson } from '../../src/calls/json.js';
import { clusterSuite } from '../support/cluster/suite.js';
import { findLeaks, numberPattern } from '../support/leaks.js';
import { startServe, type Serve } from '../support/serve.js';
import { describeMessages, uriUser } from '../support/sip/messages.js';
import { callThrough, placeCall, startUas, type CallOutcome, type UacResult } from '../support/sip/sipp.js';
import { waitFor } from '../support/wait.js';

const POOL = ['+442079460001', '+442079460002', '+442079460003', '+442079460004'];
const CUSTOMER = '+441134960123';
const AGENT = '+441614960456';
const REAL = [CUSTOMER, AGENT];
const CALL_TIMEOUT_MS = 60_000;
const AMI_SECRET = `e2e-${randomBytes(16).toString('hex')}`;

/** A node's call log, read from its file as `vnum calls` does. */
function callsOn(db: string, session: string): Call[] {
  const file = openDb(db, { readonly: true });
  try {
    return listCalls(file, { session, limit: 10 }).calls;
  } finally {
    file.close();
  }
}

/** The From and To the caller sent: SIP echoes them back, and they are the caller's own. */
function ownHeaders(caller: UacResult): string[] {
  const invite = caller.messages.find((m) => m.direction === 'sent' && m.method === 'INVITE');
  return [invite?.header('From'), invite?.header('To')].filter((v): v is string => v !== undefined);
}

function expectBridged(outcome: CallOutcome, expected: { target: string; presented: string; callerReal: string }): void {
  const detail = `caller received:\n${describeMessages(outcome.caller.received)}\ncallee received:\n${describeMessages(outcome.callee)}`;
  expect(outcome.invites, detail).toHaveLength(1);
  const invite = outcome.invites[0]!;
  expect(uriUser(invite.requestUri), detail).toBe(expected.target);
  expect(uriUser(invite.header('From')), detail).toBe(expected.presented);
  for (const id of [...invite.headerAll('P-Asserted-Identity'), ...invite.headerAll('Remote-Party-ID')]) expect(uriUser(id)).toBe(expected.presented);
  expect(outcome.caller.finalStatus, detail).toBe(200);
  // Neither side saw the other's real number anywhere in any message.
  expect(findLeaks(outcome.callee, REAL.filter((n) => n !== expected.target)), detail).toEqual([]);
  expect(findLeaks(outcome.caller.received, REAL.filter((n) => n !== expected.callerReal), ownHeaders(outcome.caller)), detail).toEqual([]);
}

clusterSuite('a real call on node A for a session created through node B\'s API', (env) => {
  let asterisk: Asterisk;
  // Asterisk first, in a hook (it may wait for another run's turn with the machine-wide lock on the fixed ports, the router's among them).
  beforeAll(async () => {
    // AMI on for the hang-up test (the first test's router has no AMI user: it does not use it).
    asterisk = await Asterisk.start({ managerConf: sampleManagerConf(AMI_SECRET) });
  });
  afterAll(async () => {
    await asterisk?.stop();
  });

  it('bridged by Asterisk on A with the masked caller ID, no real number leaked; released through B, refused on A', async () => {
    const d = await deploy(env, { name: 'call', pool: POOL, apis: [1] });
    const [a, b] = d.pbxs as [typeof d.pbxs[0], typeof d.pbxs[0]];
    let router: Serve | undefined;
    try {
      expect(a.api).toBeUndefined();
      router = await startServe({ db: a.db, port: ports.router });

      const created = await b.client!.post<CreatedJson>('/v1/sessions', { id: 'order-15001', parties: [{ number: CUSTOMER }, { number: AGENT }], ttl: '2h' });
      expect(created.status, JSON.stringify(created.body)).toBe(201);
      const session = created.body;
      const [customer, agent] = session.parties as [CreatedJson['parties'][0], CreatedJson['parties'][0]];
      await routableWithin([a.db], [session], 20_000);

      // The customer calls the agent's masked number on A: the agent's real number rings, shown the customer's masked number.
      const toAgent = await callThrough(asterisk, { dialled: agent.maskedAs, callerUser: CUSTOMER, callerName: 'Customer Real' });
      expectBridged(toAgent, { target: AGENT, presented: customer.maskedAs, callerReal: CUSTOMER });
      expect(toAgent.invites[0]!.header('From')).not.toContain('Customer');
      // The agent calls back the number it was shown.
      const toCustomer = await callThrough(asterisk, { dialled: customer.maskedAs, callerUser: AGENT });
      expectBridged(toCustomer, { target: CUSTOMER, presented: agent.maskedAs, callerReal: AGENT });

      // Released through B with no grace: once A's replica has it, the same call is refused on A and never dialled.
      const released = await b.client!.post<{ state: string }>(`/v1/sessions/${session.id}/release`, { grace: '0s' });
      expect(released.status).toBe(200);
      expect(released.body.state).toBe('ended');
      await d.settle();
      expect(routableOnFile(a.db, session)).toBe(false);
      const refused = await callThrough(asterisk, { dialled: agent.maskedAs, callerUser: CUSTOMER });
      expect(refused.callee).toEqual([]);
      expect(refused.caller.finalStatus).toBe(404);

      // No real number in A's router's log or B's API's log.
      for (const [what, text] of [['A\'s vnum serve', router.lines().join('\n')], ['B\'s vnum api', b.api!.log()]] as const) {
        for (const n of REAL) expect(numberPattern(n).test(text), `${what}'s log shows ${n}`).toBe(false);
      }
      for (const p of d.pbxs) {
        const report = await audit(d.target, p.db);
        expect(report.equal, `${p.name}: ${report.text}`).toBe(true);
      }
    } finally {
      try {
        await router?.stop();
      } finally {
        await d.stop();
      }
    }
  }, 180_000);

  it("a live call on A is torn down by a release with hangup through B's API: the request reaches A by replication, A's vnum serve hangs up through AMI, both carriers get a BYE; the call, shipped by A, shows through B's API", async () => {
    const d = await deploy(env, { name: 'hangcall', pool: POOL, apis: [1] });
    const [a, b] = d.pbxs as [typeof d.pbxs[0], typeof d.pbxs[0]];
    let router: Serve | undefined;
    const far = await startUas();
    try {
      const secretFile = join(env.dir, 'ami-secret');
      writeFileSync(secretFile, `${AMI_SECRET}\n`, { mode: 0o600 });
      // With the authority: A's call log ships there, so the API on B shows the call too.
      router = await startServe({ db: a.db, port: ports.router, env: { VNUM_AMI_USER: 'vnum', VNUM_AMI_SECRET_FILE: secretFile, VNUM_AUTHORITY: authorityUrl(d.target) } });
      const loggedIn = (): boolean => {
        const file = openDb(a.db, { readonly: true });
        try {
          return readRouterStatus(file, `127.0.0.1:${ports.router}`)?.amiState === 'logged-in';
        } finally {
          file.close();
        }
      };
      await waitFor("A's router logged in to Asterisk's AMI", () => (loggedIn() ? true : undefined), 15_000);

      const created = await b.client!.post<CreatedJson>('/v1/sessions', { id: 'order-15002', parties: [{ number: CUSTOMER }, { number: AGENT }], ttl: '2h' });
      expect(created.status, JSON.stringify(created.body)).toBe(201);
      const session = created.body;
      await routableWithin([a.db], [session], 20_000);

      // The customer calls the agent on A and they talk (the caller would hold for 25 s).
      const started = Date.now();
      const caller = placeCall({ dialled: session.parties[1]!.maskedAs, callerUser: CUSTOMER, holdMs: 25_000, timeoutS: 40 });
      await waitFor('the call answered in A\'s call log', () => callsOn(a.db, session.id).find((c) => c.state === 'answered'), 20_000);

      const released = await b.client!.post<{ state: string; hangup: { requestedAt: string; requested: number | null; ended: number | null } }>(
        `/v1/sessions/${session.id}/release`,
        { grace: '10m', hangup: true },
      );
      expect(released.status, JSON.stringify(released.body)).toBe(200);
      expect(released.body).toMatchObject({ state: 'grace', hangup: { requested: null, ended: null } });

      const result = await caller;
      const tookMs = Date.now() - started;
      expect(result.received.some((m) => m.method === 'BYE'), describeMessages(result.received)).toBe(true);
      expect(tookMs).toBeLessThan(20_000);
      await asterisk.waitIdle();
      expect(far.received().some((m) => m.method === 'BYE')).toBe(true);
      const ended = await waitFor("the end in A's call log", () => callsOn(a.db, session.id).find((c) => c.state === 'ended'), 10_000);
      expect(ended).toMatchObject({ dialStatus: 'ANSWER', hangupReason: 'release', hangupCause: 16, hangupRequestedAt: Date.parse(released.body.hangup.requestedAt) });
      // The call on the authority, through B's API (B never carried it): as A's log has it, with the authority's id.
      const onAuthority = await eventually("the ended call through B's API", 15_000, async () => {
        const page = await b.client!.get<{ calls: Array<ReturnType<typeof callJson>> }>(`/v1/calls?session=${session.id}`);
        return page.status === 200 && page.body.calls.length === 1 && page.body.calls[0]!.state === 'ended' ? page.body.calls[0]! : undefined;
      });
      expect(onAuthority).toEqual({ ...callJson(ended), id: onAuthority.id });
      console.log(`cluster hang-up: a 25 s call ended ${tookMs} ms after it was placed, by a release through the other node's API`);
    } finally {
      await far.stop();
      try {
        await router?.stop();
      } finally {
        await d.stop();
      }
    }
  }, 180_000);
}, { hosts: 2, asterisk: true });
