/**
 * The router's answer (src/routing/answer.ts) and the router as `vnum serve`
 * composes it (src/cli/serve.ts: the FastAGI server, the call, the decision,
 * the answer): whatever `route` decides, only a well-formed answer reaches the
 * dialplan, and anything else is ERROR, logged once.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { startFastAgiServer, type FastAgiServer } from '../../agi/server.js';
import { FALLBACK_ANSWER, inboundCall, routeCalls, type InboundCall } from '../../src/cli/serve.js';
import { answerFor, CHANNEL_VARIABLES, channelVariables, ERROR_ANSWER, SAFE_VALUE } from '../../src/routing/answer.js';
import { ROUTE_STATUSES, type RouteDecision } from '../../src/routing/decide.js';
import { createCallRouter } from '../../src/routing/service.js';
import { asteriskRunsMSet } from '../support/asterisk-model.js';
import { placeCall } from '../support/fake-asterisk.js';
import { captureLog, type CapturedLog } from '../support/log.js';
import { readRepo } from '../support/repo.js';
import { londonDids, seedPool, tempDb } from '../support/store.js';
import { until } from '../support/wait.js';

const BRIDGE: RouteDecision = { status: 'BRIDGE', target: '+447700900789' as never, presentedCallerId: '+447700900111' as never, session: 's_01HX' };
const BRIDGE_COMMAND = 'EXEC MSet "VNUM_STATUS=BRIDGE,VNUM_TARGET=+447700900789,VNUM_CLI=+447700900111,VNUM_SESSION=s_01HX"';
const ERROR_COMMAND = 'EXEC MSet "VNUM_STATUS=ERROR,VNUM_TARGET=,VNUM_CLI=,VNUM_SESSION="';

const routers: FastAgiServer[] = [];
afterEach(async () => {
  await Promise.all(routers.splice(0).map((r) => r.close(0)));
});

/** The router as `vnum serve` wires it, with `route` standing in for the store's decision. */
async function start(route: (call: InboundCall) => RouteDecision, log: CapturedLog = captureLog()) {
  const calls: InboundCall[] = [];
  const router = await startFastAgiServer({
    port: 0,
    logger: log.logger,
    handler: routeCalls((call) => (calls.push(call), route(call)), log.logger),
    fallback: FALLBACK_ANSWER,
  });
  routers.push(router);
  return { port: router.address().port, calls, log };
}

describe('answerFor', () => {
  it('a BRIDGE carries its target, presented caller ID and session, in the order the dialplan reads them', () => {
    const answer = answerFor(BRIDGE)!;
    expect(answer).toEqual({ status: 'BRIDGE', target: '+447700900789', presentedCallerId: '+447700900111', session: 's_01HX' });
    expect(channelVariables(answer)).toEqual([
      ['VNUM_STATUS', 'BRIDGE'],
      ['VNUM_TARGET', '+447700900789'],
      ['VNUM_CLI', '+447700900111'],
      ['VNUM_SESSION', 's_01HX'],
    ]);
  });

  it('every other status carries no number, whatever the decision held', () => {
    // FALLBACK carries numbers too: the operator's desk and the dialled number (test/unit/pin.test.ts).
    for (const status of ROUTE_STATUSES.filter((s) => s !== 'BRIDGE' && s !== 'FALLBACK')) {
      expect(answerFor({ ...BRIDGE, status }), status).toEqual({ status, target: '', presentedCallerId: '', session: 's_01HX' });
    }
    expect(answerFor({ status: 'NO_SESSION', target: null, presentedCallerId: null, session: null })).toEqual({
      status: 'NO_SESSION',
      target: '',
      presentedCallerId: '',
      session: '',
    });
  });

  it('ERROR_ANSWER is ERROR with nothing else', () => {
    expect(channelVariables(ERROR_ANSWER)).toEqual([
      ['VNUM_STATUS', 'ERROR'],
      ['VNUM_TARGET', ''],
      ['VNUM_CLI', ''],
      ['VNUM_SESSION', ''],
    ]);
  });
});

describe('the router as vnum serve composes it', () => {
  it('hands the handler the call from the environment, verbatim', async () => {
    const { port, calls } = await start(() => BRIDGE);
    const { command } = await placeCall(port);
    expect(command).toBe(BRIDGE_COMMAND);
    expect(asteriskRunsMSet(command)).toEqual(channelVariables(answerFor(BRIDGE)!));
    expect(calls).toEqual([
      {
        callerId: '+447700900123',
        extension: '+447700900456',
        dnid: '+447700900456',
        uniqueId: '1732526400.17',
        channel: 'PJSIP/carrier-00000001',
      },
    ]);
    expect(inboundCall(new Map([['agi_callerid', 'unknown']]))).toEqual({ callerId: 'unknown', extension: '', dnid: '', uniqueId: '', channel: '' });
  });

  it.each([
    [
      'throws',
      () => {
        throw new Error('database locked for +447700900123');
      },
    ],
    ['returns nothing', () => undefined as unknown as RouteDecision],
    ['returns an unknown status', () => ({ ...BRIDGE, status: 'OK' }) as unknown as RouteDecision],
    ['returns a target with dialplan syntax', () => ({ ...BRIDGE, target: '500&PJSIP/itsp/14165551212' }) as RouteDecision],
    ['returns a value with a comma', () => ({ ...BRIDGE, session: 'a,VNUM_STATUS=BRIDGE' })],
    ['returns a value too long', () => ({ ...BRIDGE, session: 's'.repeat(65) })],
    ['returns a number instead of a string', () => ({ ...BRIDGE, target: 447700900789 }) as unknown as RouteDecision],
    ['bridges without a target', () => ({ ...BRIDGE, target: null })],
    ['bridges with an empty target', () => ({ ...BRIDGE, target: '' }) as unknown as RouteDecision],
    ['bridges without a presented CLI', () => ({ ...BRIDGE, presentedCallerId: null })],
    ['bridges with an empty presented CLI', () => ({ ...BRIDGE, presentedCallerId: '' }) as unknown as RouteDecision],
    ['refuses with a target with dialplan syntax', () => ({ ...BRIDGE, status: 'ENDED', target: '500&PJSIP/itsp/14165551212' }) as RouteDecision],
    [
      'returns an object whose getter throws',
      () =>
        ({
          get status(): string {
            throw new Error('getter');
          },
        }) as unknown as RouteDecision,
    ],
    [
      'returns a status whose toString throws',
      () => ({ ...BRIDGE, status: { toString: () => { throw new Error('toString'); } } }) as unknown as RouteDecision,
    ],
  ])('answers VNUM_STATUS=ERROR when route %s, and logs it', async (_what, route) => {
    const { port, log } = await start(route);
    const { command } = await placeCall(port);
    expect(command).toBe(ERROR_COMMAND);
    expect(log.records().filter((r) => r.level === 50)).toHaveLength(1);
  });

  it('never carries a number on a status that is not BRIDGE', async () => {
    const { port } = await start(() => ({ ...BRIDGE, status: 'ENDED' }));
    const { command } = await placeCall(port);
    expect(command).toBe('EXEC MSet "VNUM_STATUS=ENDED,VNUM_TARGET=,VNUM_CLI=,VNUM_SESSION=s_01HX"');
  });

  it('logs one debug line per connection with status, duration and what matches it to the call; numbers redacted by the logger', async () => {
    const log = captureLog();
    const { port } = await start(() => {
      throw new Error('no route');
    }, log);
    await placeCall(port);
    const ok = await start(() => BRIDGE, log);
    await placeCall(ok.port, { agi_uniqueid: 'pbx1-1732526400.17', agi_channel: 'PJSIP/carrier-00000017' });
    await until(() => log.records().filter((r) => r.msg === 'FastAGI connection').length === 2);
    const connections = log.records().filter((r) => r.msg === 'FastAGI connection');
    expect(connections.map((c) => c.status)).toEqual(['ERROR', 'BRIDGE']);
    for (const c of connections) {
      expect(c).toMatchObject({ level: 20, outcome: 'answered', caller: '+********0123', dialled: '+********0456' });
      expect(c.durationUs).toEqual(expect.any(Number));
      expect(c.durationUs as number).toBeGreaterThan(0);
    }
    // The identifiers survive intact: Asterisk's uniqueid and channel, the session.
    expect(connections[0]).toMatchObject({ uniqueid: '1732526400.17', channel: 'PJSIP/carrier-00000001' });
    expect(connections[0]!.session).toBeUndefined();
    expect(connections[1]).toMatchObject({ uniqueid: 'pbx1-1732526400.17', channel: 'PJSIP/carrier-00000017', session: 's_01HX' });
    for (const line of log.lines) {
      for (const number of ['447700900123', '447700900456', '447700900789', '447700900111']) {
        expect(line).not.toContain(number);
      }
    }
  });
});

describe('the dialplan reads what the answer writes', () => {
  const conf = readRepo('dialplan/vnum.conf');
  const readme = readRepo('dialplan/README.md');

  it('every channel variable is declared LOCAL in vnum.conf and named in dialplan/README.md; the three a dial needs are read', () => {
    for (const name of Object.values(CHANNEL_VARIABLES)) {
      expect(conf, name).toContain(`LOCAL(${name})=`);
      expect(readme, name).toContain(`\`${name}\``);
    }
    for (const name of [CHANNEL_VARIABLES.status, CHANNEL_VARIABLES.target, CHANNEL_VARIABLES.presentedCallerId]) {
      expect(conf, name).toContain(`\${${name}}`);
    }
  });

  it('every status is in vnum.conf\'s router contract and branched on (ERROR by falling through), and in dialplan/README.md', () => {
    const contract = /VNUM_STATUS {3}([A-Z_ |\n;]+?)\n; {3}VNUM_TARGET/.exec(conf)?.[1]?.replace(/[;\s]+/g, ' ');
    expect(contract?.split('|').map((s) => s.trim())).toEqual([...ROUTE_STATUSES]);
    for (const status of ROUTE_STATUSES.filter((s) => s !== 'ERROR')) {
      expect(conf, status).toContain(`"\${VNUM_CHECKED_STATUS}" = "${status}"`);
    }
    for (const status of ROUTE_STATUSES) expect(readme, status).toMatch(new RegExp(`\\b${status}\\b`));
  });

  it('dialplan/README.md\'s table of the router\'s answer is CHANNEL_VARIABLES, ROUTE_STATUSES and SAFE_VALUE', () => {
    const section = readme.slice(readme.indexOf("## The router's answer"), readme.indexOf('### Call shaping'));
    const rows = [...section.matchAll(/^\| `(VNUM_[A-Z_]+)` \| (.*) \|$/gm)];
    expect(rows.map((r) => r[1])).toEqual(Object.values(CHANNEL_VARIABLES));
    expect([...rows[0]![2]!.matchAll(/`([A-Z_]+)`/g)].map((m) => m[1])).toEqual([...ROUTE_STATUSES]);
    expect(SAFE_VALUE.source).toBe('^[A-Za-z0-9+._:-]{0,64}$');
    expect(section).toContain('at most 64 characters of `A-Z a-z 0-9 + . _ : -`');
  });

  it('the status check keeps only what SAFE_VALUE allows a status to be', () => {
    expect(conf).toContain('Set(VNUM_CHECKED_STATUS=${FILTER(A-Z_,${VNUM_STATUS})})');
    for (const status of ROUTE_STATUSES) expect(status).toMatch(SAFE_VALUE);
  });
});

describe('a flood of bad calls does not flood the log', () => {
  it('the router logs at most 20 "invalid call" lines a second, however many come, and says how many it left out', async () => {
    const store = tempDb();
    try {
      seedPool(store.db, londonDids(2));
      let now = Date.now();
      const log = captureLog({ level: 'info', now: () => now });
      const router = createCallRouter({ dbPath: store.path, logger: log.logger, defaultCountry: 'GB' });
      try {
        const withheld = { callerId: 'anonymous', extension: londonDids(1)[0]!, dnid: '' };
        for (let i = 0; i < 500; i++) expect(router.route(withheld).status).toBe('INVALID');
        expect(log.records().filter((r) => r.msg === 'invalid call')).toHaveLength(20);
        now += 1_000;
        router.route(withheld);
        expect(log.records().filter((r) => r.msg === 'invalid call').at(-1)).toMatchObject({ suppressed: 480 });
      } finally {
        router.close();
      }
    } finally {
      store.cleanup();
    }
  });
});
