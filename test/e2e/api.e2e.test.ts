/**
 * End to end through the HTTP API: the order system's consumer creates the
 * session over HTTP (`vnum api`, real HTTP), and a real SIP call through the
 * real Asterisk 22 running dialplan/vnum.conf is routed by `vnum serve` on
 * the same database file: the agent's real number rings, presented with the
 * customer's masked number. Released over HTTP, the pair routes nowhere.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { ApiClient, startApi, type ApiProcess } from '../support/api.js';
import { Asterisk } from '../support/asterisk/asterisk.js';
import { ports } from '../support/asterisk/paths.js';
import { VnumDb } from '../support/cli.js';
import { findLeaks } from '../support/leaks.js';
import { startServe } from '../support/serve.js';
import { uriUser } from '../support/sip/messages.js';
import { callThrough } from '../support/sip/sipp.js';
import { e2eSuite } from '../support/suite.js';
import { stopWorld, type World } from '../support/world.js';

const POOL = ['+442079460001', '+442079460002', '+442079460003'];
const CUSTOMER = '+441134960123';
const AGENT = '+441614960456';
const CALL_TIMEOUT_MS = 60_000;

e2eSuite('a session created through the HTTP API, a real call through Asterisk', () => {
  let world: World | undefined;
  let api: ApiProcess | undefined;
  let client: ApiClient;

  beforeAll(async () => {
    const db = new VnumDb({ VNUM_DEFAULT_COUNTRY: 'GB' });
    db.poolAdd(POOL);
    const created = db.run(['apikey', 'create', '--name', 'orders', '--scope', 'sessions', '--json']);
    if (created.code !== 0) throw new Error(created.stderr);
    const asterisk = await Asterisk.start();
    world = { asterisk, db, router: await startServe({ db: db.file, port: ports.router }) };
    api = await startApi({ db: db.file });
    client = new ApiClient(api.url, JSON.parse(created.stdout).key);
  });
  afterAll(async () => {
    try {
      await api?.stop();
    } finally {
      await stopWorld(world);
    }
  });

  const call = (dialled: string, callerUser: string) => callThrough(world!.asterisk, { dialled, callerUser });

  it('DriverAssigned: created over HTTP, the customer calls the agent\'s masked number and the agent\'s phone rings with the customer\'s masked number', async () => {
    const created = await client.post('/v1/sessions', { id: 'order-7001', parties: [{ number: CUSTOMER }, { number: AGENT }], ttl: '2h' });
    expect(created.status).toBe(201);
    const [customer, agent] = (created.body as any).parties as Array<{ number: string; maskedAs: string }>;
    const outcome = await call(agent!.maskedAs, CUSTOMER);
    expect(outcome.invites).toHaveLength(1);
    expect(uriUser(outcome.invites[0]!.requestUri)).toBe(AGENT);
    expect(uriUser(outcome.invites[0]!.header('From'))).toBe(customer!.maskedAs);
    expect(outcome.caller.finalStatus).toBe(200);
    expect(findLeaks(outcome.callee, [CUSTOMER])).toEqual([]);

    // The agent calls back the number it was shown.
    const back = await call(customer!.maskedAs, AGENT);
    expect(uriUser(back.invites[0]!.requestUri)).toBe(CUSTOMER);
    expect(uriUser(back.invites[0]!.header('From'))).toBe(agent!.maskedAs);
  }, CALL_TIMEOUT_MS);

  it('delivered: released over HTTP with no grace, the same call is refused and never dialled', async () => {
    const released = await client.post('/v1/sessions/order-7001/release', { grace: '0s' });
    expect((released.body as any).state).toBe('ended');
    const session = (await client.get('/v1/sessions/order-7001')).body as any;
    const outcome = await call(session.parties[1].maskedAs, CUSTOMER);
    expect(outcome.callee).toEqual([]);
    expect(outcome.caller.finalStatus).toBe(404);
  }, CALL_TIMEOUT_MS);
});
