/**
 * End to end: signed webhooks for a real SIP call. The order system creates
 * the session through the HTTP API (`vnum api`, a key with the sessions
 * scope), as its DriverAssigned consumer would. The product's `vnum
 * serve` (AMI on, the shipped manager.sample.conf) routes a real call
 * through a real Asterisk 22; the built `vnum webhooks deliver` sends what
 * the call log records to a real HTTP receiver; the receiver verifies each
 * signature and gets, for the session, in order: session.created,
 * call.bridged, call.answered, call.ended, then session.released,
 * session.ended and call.refused for a call after the end. No real number
 * in any payload.
 *
 *   carrier-in (sipp) --> Asterisk --FastAGI--> vnum serve --AMI--> Asterisk
 *                                   '--> carrier-out (sipp)
 *   vnum webhooks deliver --HTTP--> receiver (loopback, an ephemeral port)
 *   order system --HTTP--> vnum api (POST /v1/sessions)
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { ApiClient, startApi, type ApiProcess } from '../support/api.js';
import { Asterisk } from '../support/asterisk/asterisk.js';
import { ports } from '../support/asterisk/paths.js';
import { VNUM_BIN, VnumDb, type SessionJson } from '../support/cli.js';
import { startReceiver, type Receiver } from '../support/receiver.js';
import { repoRoot } from '../support/repo.js';
import { startServe } from '../support/serve.js';
import { placeCall, startUas } from '../support/sip/sipp.js';
import { e2eSuite } from '../support/suite.js';
import { sleep, until } from '../support/wait.js';
import { stopWorld as stopSharedWorld, type World as SharedWorld } from '../support/world.js';

const POOL = Array.from({ length: 6 }, (_, i) => `+4420794600${String(i + 1).padStart(2, '0')}`);
const ALICE = '+441134960123';
const DEV = '+441614960456';
const STRANGER = '+441314960999';
const REAL = [ALICE, DEV, STRANGER];
const AMI_SECRET = `e2e-${randomBytes(16).toString('hex')}`;
const WEBHOOK_SECRET = randomBytes(32).toString('hex');

function managerConf(): string {
  const sample = readFileSync(path.join(repoRoot, 'dialplan/manager.sample.conf'), 'utf8');
  return sample.replace(/^secret\s*=.*$/m, `secret = ${AMI_SECRET}`);
}

interface World extends SharedWorld {
  deliverer: ChildProcess;
  delivererOutput: () => string;
  receiver: Receiver;
  order: SessionJson;
  secrets: string;
  api: ApiProcess;
}

async function startWorld(): Promise<World> {
  const secrets = mkdtempSync(path.join(tmpdir(), 'vnum-e2e-webhooks-'));
  writeFileSync(path.join(secrets, 'ami'), `${AMI_SECRET}\n`, { mode: 0o600 });
  writeFileSync(path.join(secrets, 'webhook'), `${WEBHOOK_SECRET}\n`, { mode: 0o600 });
  chmodSync(path.join(secrets, 'webhook'), 0o600);
  const db = new VnumDb({ VNUM_DEFAULT_COUNTRY: 'GB' });
  db.poolAdd(POOL);
  const receiver = await startReceiver({ secrets: [WEBHOOK_SECRET] });
  // The deliverer turns recording on: everything from here on has its event.
  const deliverer = spawn(
    process.execPath,
    [VNUM_BIN, '--db', db.file, 'webhooks', 'deliver', '--url', receiver.url, '--secret-file', path.join(secrets, 'webhook'), '--allow-local'],
    { env: { ...process.env, ...db.env }, stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let output = '';
  deliverer.stderr!.setEncoding('utf8').on('data', (c: string) => (output += c));
  await until(() => output.includes('delivering from this store'), 15_000);
  const key = db.run(['apikey', 'create', '--name', 'orders', '--scope', 'sessions', '--json']);
  if (key.code !== 0) throw new Error(key.stderr);
  const api = await startApi({ db: db.file });
  const created = await new ApiClient(api.url, JSON.parse(key.stdout).key).post('/v1/sessions', {
    id: 'order-alice',
    parties: [{ number: ALICE }, { number: DEV }],
    ttl: '2h',
  });
  if (created.status !== 201) throw new Error(`POST /v1/sessions: ${created.status} ${JSON.stringify(created.body)}`);
  const order = created.body as unknown as SessionJson;
  const asterisk = await Asterisk.start({ managerConf: managerConf() });
  const router = await startServe({
    db: db.file,
    port: ports.router,
    env: { VNUM_AMI_USER: 'vnum', VNUM_AMI_SECRET_FILE: path.join(secrets, 'ami') },
  });
  await until(() => JSON.parse(db.run(['health', '--json']).stdout).ami.state === 'logged-in', 15_000);
  return { asterisk, db, router, deliverer, delivererOutput: () => output, receiver, order, secrets, api };
}

/** The deliverer first (SIGTERM, waited for), then the shared world, the receiver and the secrets. */
async function stopWorld(world: World | undefined): Promise<void> {
  if (!world) return;
  try {
    const exited = new Promise((resolve) => (world.deliverer.exitCode !== null ? resolve(null) : world.deliverer.once('exit', resolve)));
    world.deliverer.kill('SIGTERM');
    await exited;
    await world.api.stop();
  } finally {
    await stopSharedWorld(world, () => rmSync(world.secrets, { recursive: true, force: true }));
    await world.receiver.close();
  }
}

/** The session's events as the receiver first got them. */
function eventsOf(receiver: Receiver, session: string) {
  const seen = new Set<string>();
  return receiver.received.filter((r) => r.event.session === session && !seen.has(r.event.id) && seen.add(r.event.id)).map((r) => r.event);
}

e2eSuite('signed webhooks for a real call (Asterisk 22, AMI, vnum webhooks deliver)', () => {
  let world: World | undefined;

  beforeAll(async () => {
    world = await startWorld();
  });
  afterAll(async () => {
    if (process.env.VNUM_E2E_SHOW_LOG) console.log(world?.router.lines().join('\n'), world?.delivererOutput());
    await stopWorld(world);
  });

  it('an answered call: call.bridged, call.answered, call.ended after session.created, signed, with the masked numbers only', async () => {
    const w = world!;
    const far = await startUas({ ringMs: 300 });
    let caller;
    try {
      caller = await placeCall({ dialled: w.order.parties[1].maskedAs, callerUser: ALICE, holdMs: 1_500 });
      await w.asterisk.waitIdle();
    } finally {
      await far.stop();
    }
    expect(caller.finalStatus).toBe(200);
    await until(() => eventsOf(w.receiver, 'order-alice').some((e) => e.type === 'call.ended'), 15_000);
    const events = eventsOf(w.receiver, 'order-alice');
    expect(events.map((e) => e.type)).toEqual(['session.created', 'call.bridged', 'call.answered', 'call.ended']);
    const [, bridged, answered, ended] = events;
    for (const e of [bridged!, answered!, ended!]) {
      expect(e.session).toBe('order-alice');
      expect(e.data.call).toMatchObject({
        caller: 'first',
        dialled: w.order.parties[1].maskedAs,
        presented: w.order.parties[0].maskedAs,
        uniqueid: bridged!.data.call.uniqueid,
      });
    }
    expect(ended!.data.call).toMatchObject({ state: 'ended', dialStatus: 'ANSWER', hangupCause: 16, hangupCauseText: 'Normal Clearing' });
    expect(ended!.data.call.durationMs).toBeGreaterThan(1_000);
    expect(ended!.data.call.durationMs).toBeLessThan(2_500);
    expect(Date.parse(ended!.occurredAt)).toBe(Date.parse(ended!.data.call.endedAt));
    expect(w.receiver.received.every((r) => r.verified)).toBe(true);
  }, 60_000);

  it('released, ended by the clock, then a call after the end: session.released, session.ended, call.refused; a stranger\'s call sends nothing', async () => {
    const w = world!;
    const released = w.db.run(['session', 'release', 'order-alice', '--grace', '1s']);
    expect(released.code, released.stderr).toBe(0);
    await until(() => eventsOf(w.receiver, 'order-alice').some((e) => e.type === 'session.ended'), 15_000);
    const before = w.receiver.received.length;
    for (const callerUser of [STRANGER, ALICE]) {
      const result = await placeCall({ dialled: w.order.parties[1].maskedAs, callerUser });
      expect(result.finalStatus).toBe(404);
      await w.asterisk.waitIdle();
    }
    await until(() => eventsOf(w.receiver, 'order-alice').some((e) => e.type === 'call.refused'), 15_000);
    const refused = eventsOf(w.receiver, 'order-alice').find((e) => e.type === 'call.refused')!;
    expect(refused).toMatchObject({ session: 'order-alice' });
    expect(refused.data).toMatchObject({ call: { caller: 'first', dialled: w.order.parties[1].maskedAs, reason: 'session-ended' } });
    await sleep(1_000);
    // The stranger's call (NO_SESSION) is only counted.
    expect(w.receiver.received.slice(before).map((r) => r.event.type)).toEqual(['call.refused']);
    expect(eventsOf(w.receiver, 'order-alice').map((e) => e.type)).toEqual([
      'session.created',
      'call.bridged',
      'call.answered',
      'call.ended',
      'session.released',
      'session.ended',
      'call.refused',
    ]);
    await w.router.stop();
    const status = JSON.parse(w.db.run(['webhooks', 'status', '--json']).stdout);
    expect(status).toMatchObject({ backlog: 0, counters: { delivered: 7, refusedNoSession: 1, parked: 0 } });
  }, 60_000);

  it('no real number in any payload, header or log line of the deliverer or the API', () => {
    const w = world!;
    const everything = [...w.receiver.received.map((r) => `${JSON.stringify(r.headers)}\n${r.body}`), w.delivererOutput(), w.api.log()].join('\n');
    for (const number of REAL) expect(everything).not.toContain(number.replace(/\D/g, '').slice(-9));
  });
});
