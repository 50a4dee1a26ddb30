import net from 'node:net';
import { randomBytes } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { startFastAgiServer, type AgiAnswer, type AgiEnvironment, type FastAgiServer, type FastAgiServerOptions } from '../../agi/server.js';
import { AllowList } from '../../agi/allow-list.js';
import { HEALTH_PROBE_ANSWER, probeEnvironment, probeRouter } from '../../agi/health-probe.js';
import { asteriskRunsMSet } from '../support/asterisk-model.js';
import { FakeAsterisk, environmentText, placeCall } from '../support/fake-asterisk.js';
import { captureLog, type CapturedLog } from '../support/log.js';
import { itWhen } from '../support/suite.js';
import { sleep, until } from '../support/wait.js';

/** The server is vnum's, the variables any handler's: these are the router's, for familiar commands. */
const BRIDGE_CLI = '+447700900111';
const BRIDGE: AgiAnswer = {
  variables: [
    ['VNUM_STATUS', 'BRIDGE'],
    ['VNUM_TARGET', '+447700900789'],
    ['VNUM_CLI', BRIDGE_CLI],
    ['VNUM_SESSION', 's_01HX'],
  ],
};
const FALLBACK: AgiAnswer = { variables: [['VNUM_STATUS', 'ERROR'], ['VNUM_TARGET', ''], ['VNUM_CLI', ''], ['VNUM_SESSION', '']] };
const BRIDGE_COMMAND =
  'EXEC MSet "VNUM_STATUS=BRIDGE,VNUM_TARGET=+447700900789,VNUM_CLI=+447700900111,VNUM_SESSION=s_01HX"';
const ERROR_COMMAND = 'EXEC MSet "VNUM_STATUS=ERROR,VNUM_TARGET=,VNUM_CLI=,VNUM_SESSION="';

const routers: FastAgiServer[] = [];
afterEach(async () => {
  await Promise.all(routers.splice(0).map((r) => r.close(0)));
});

interface Started {
  router: FastAgiServer;
  port: number;
  /** The environments the handler was given. */
  calls: AgiEnvironment[];
  log: CapturedLog;
}

async function start(options: Partial<FastAgiServerOptions> = {}, log: CapturedLog = captureLog()): Promise<Started> {
  const calls: AgiEnvironment[] = [];
  const handler = options.handler ?? (() => BRIDGE);
  const router = await startFastAgiServer({
    port: 0,
    logger: log.logger,
    fallback: FALLBACK,
    ...options,
    handler: (env) => {
      calls.push(env);
      return handler(env);
    },
  });
  routers.push(router);
  return { router, port: router.address().port, calls, log };
}

/** Why this host cannot listen on '::' for IPv4 and IPv6 at once, or null when it can. */
const noDualStack = await new Promise<string | null>((resolve) => {
  const probe = net.createServer();
  probe.once('error', (e: NodeJS.ErrnoException) => resolve(`no dual-stack IPv6 socket here (${e.code ?? e.message})`));
  probe.listen(0, '::', () => probe.close(() => resolve(null)));
});

function warnings(log: CapturedLog): Array<Record<string, unknown>> {
  return log.records().filter((r) => r.level === 40);
}

/** A handler that answers BRIDGE after `ms`. */
function later(ms: number): () => Promise<AgiAnswer> {
  return async () => {
    await sleep(ms);
    return BRIDGE;
  };
}

/** After hostile input: the server still answers a real call. */
async function stillAnswers(port: number): Promise<void> {
  const { command } = await placeCall(port);
  expect(command).toBe(BRIDGE_COMMAND);
}

describe('a well-formed call', () => {
  it('answers with one EXEC MSet, waits for the 200, then closes', async () => {
    const { port, router, calls } = await start();
    expect(router.address()).toEqual({ host: '127.0.0.1', port });
    const asterisk = await FakeAsterisk.connect(port);
    asterisk.send(environmentText());
    expect(await asterisk.nextLine()).toBe(BRIDGE_COMMAND);
    expect(asteriskRunsMSet(BRIDGE_COMMAND)).toEqual(BRIDGE.variables);
    await sleep(30);
    expect(asterisk.socket.readableEnded).toBe(false); // still waiting for the reply
    expect(router.connections()).toBe(1);
    asterisk.send('200 result=0\n');
    const closed = await asterisk.closed;
    expect(closed.hadError).toBe(false);
    expect(asterisk.received).toBe(BRIDGE_COMMAND + '\n'); // one command, nothing else
    expect(calls).toHaveLength(1);
    expect(Object.fromEntries(calls[0]!)).toMatchObject({
      agi_callerid: '+447700900123',
      agi_extension: '+447700900456',
      agi_dnid: '+447700900456',
      agi_uniqueid: '1732526400.17',
      agi_channel: 'PJSIP/carrier-00000001',
      agi_request: 'agi://127.0.0.1:4573/route',
    });
    await until(() => router.connections() === 0);
  });

  it('passes values with colons and a missing caller through verbatim', async () => {
    const { port, calls } = await start();
    await placeCall(port, {
      agi_callerid: 'unknown',
      agi_channel: 'PJSIP/trunk:a-00000002',
      agi_request: 'agi://[::1]:4573/route?x=a:b',
    });
    expect(Object.fromEntries(calls[0]!)).toMatchObject({
      agi_callerid: 'unknown',
      agi_channel: 'PJSIP/trunk:a-00000002',
      agi_request: 'agi://[::1]:4573/route?x=a:b',
    });
  });

  it('reads an environment sent byte by byte or in odd chunks', async () => {
    const { port, calls } = await start();
    for (const sizes of [[1], [3, 7, 13], [200, 1, 64]]) {
      const asterisk = await FakeAsterisk.connect(port);
      await asterisk.sendInChunks(environmentText(), sizes);
      expect(await asterisk.nextLine()).toBe(BRIDGE_COMMAND);
      asterisk.send('200 ');
      await sleep(5);
      asterisk.send('result=0\n');
      await asterisk.closed;
    }
    expect(calls.map((c) => c.get('agi_request'))).toEqual(Array(3).fill('agi://127.0.0.1:4573/route'));
  });

  it('awaits an async handler', async () => {
    const { port } = await start({
      handler: async () => {
        await sleep(20);
        return { variables: [['VNUM_STATUS', 'NO_SESSION'], ['VNUM_TARGET', ''], ['VNUM_CLI', ''], ['VNUM_SESSION', '']] };
      },
    });
    const { command } = await placeCall(port);
    expect(command).toBe('EXEC MSet "VNUM_STATUS=NO_SESSION,VNUM_TARGET=,VNUM_CLI=,VNUM_SESSION="');
  });

  it('pairs 50 concurrent calls with their own answers', async () => {
    const { port } = await start({
      handler: async (env) => {
        await sleep(Math.random() * 20);
        return {
          variables: [
            ['VNUM_STATUS', 'BRIDGE'],
            ['VNUM_TARGET', env.get('agi_callerid')!],
            ['VNUM_CLI', BRIDGE_CLI],
            ['VNUM_SESSION', env.get('agi_uniqueid')!.replace('.', '_')],
          ],
        };
      },
    });
    const results = await Promise.all(
      Array.from({ length: 50 }, (_, i) =>
        placeCall(port, { agi_callerid: `+4477009${String(i).padStart(5, '0')}`, agi_uniqueid: `1732526400.${i}` }),
      ),
    );
    results.forEach(({ command }, i) => {
      expect(asteriskRunsMSet(command)).toEqual([
        ['VNUM_STATUS', 'BRIDGE'],
        ['VNUM_TARGET', `+4477009${String(i).padStart(5, '0')}`],
        ['VNUM_CLI', BRIDGE_CLI],
        ['VNUM_SESSION', `1732526400_${i}`],
      ]);
    });
  });
});

describe('what Asterisk may send back', () => {
  it('skips HANGUP lines before and after the command', async () => {
    const { port, router } = await start({
      handler: later(20),
    });
    const asterisk = await FakeAsterisk.connect(port);
    asterisk.send(environmentText());
    await sleep(5);
    asterisk.send('HANGUP\n'); // the caller hung up while we routed
    expect(await asterisk.nextLine()).toBe(BRIDGE_COMMAND);
    asterisk.send('HANGUP\n200 result=0\n');
    expect((await asterisk.closed).hadError).toBe(false);
    await until(() => router.connections() === 0);
  });

  it.each([
    ['510', '510 Invalid or unknown command\n'],
    ['511', '511 Command Not Permitted on a dead channel or intercept routine\n'],
    ['520', '520 Invalid command syntax.  Proper usage not available.\n'],
    [
      'multi-line 520',
      '520-Invalid command syntax.  Proper usage follows:\n Usage: EXEC <application> <options>\n  Executes application.\n520 End of proper usage.\n',
    ],
  ])('closes after a %s reply and warns', async (_name, reply) => {
    const { port, log } = await start();
    const asterisk = await FakeAsterisk.connect(port);
    asterisk.send(environmentText());
    await asterisk.nextLine();
    await asterisk.sendInChunks(reply, [5, 11]);
    const closed = await asterisk.closed;
    expect(closed.afterMs).toBeLessThan(1000); // the reply ended it, not the deadline
    expect(warnings(log).map((w) => w.msg)).toEqual(['Asterisk did not accept the MSet answer']);
    expect(warnings(log)[0]).toMatchObject({ code: Number(reply.slice(0, 3)) });
    await stillAnswers(port);
  });

  it('drops a reply that arrives before the command could have been read', async () => {
    const { port, calls } = await start();
    const asterisk = await FakeAsterisk.connect(port);
    asterisk.send(environmentText() + '200 result=0\n');
    await asterisk.closed;
    expect(asterisk.received).toBe('');
    expect(calls).toEqual([]);
  });
});

describe('hostile or broken peers', () => {
  it('survives a reset mid-environment and mid-command', async () => {
    const { port, router, log } = await start();
    const early = await FakeAsterisk.connect(port);
    early.send(environmentText().slice(0, 100));
    await until(() => router.connections() === 1);
    early.reset();
    await until(() => router.connections() === 0);

    const late = await FakeAsterisk.connect(port);
    late.send(environmentText());
    await late.nextLine();
    late.reset();
    await until(() => router.connections() === 0);
    const connections = log.records().filter((r) => r.msg === 'FastAGI connection');
    // Whether Node surfaces the RST as ECONNRESET or as a plain close depends on timing.
    expect(connections.map((c) => c.outcome)).toEqual(['peer-closed', 'peer-closed']);
    await stillAnswers(port);
  });

  it('destroys a connection that never sends, at the deadline', async () => {
    const { port, router, log } = await start({ deadlineMs: 150 });
    const idle = await FakeAsterisk.connect(port);
    const closed = await idle.closed;
    expect(closed.afterMs).toBeGreaterThanOrEqual(140);
    expect(closed.afterMs).toBeLessThan(1000);
    expect(router.connections()).toBe(0);
    expect(warnings(log)[0]).toMatchObject({ msg: 'FastAGI deadline passed: connection destroyed', stage: 'environment' });
  });

  it('destroys a connection whose peer never replies to the command, at the deadline', async () => {
    const { port } = await start({ deadlineMs: 150 });
    const mute = await FakeAsterisk.connect(port);
    mute.send(environmentText());
    expect(await mute.nextLine()).toBe(BRIDGE_COMMAND);
    expect((await mute.closed).afterMs).toBeLessThan(1000);
  });

  it('bounds a trickling client by the same deadline', async () => {
    const { port } = await start({ deadlineMs: 200 });
    const slow = await FakeAsterisk.connect(port);
    const text = environmentText();
    let i = 0;
    const trickle = setInterval(() => slow.send(text[i++ % text.length]!), 10);
    const closed = await slow.closed;
    clearInterval(trickle);
    expect(closed.afterMs).toBeLessThan(1000);
  });

  it('copes with a peer that half-closes after its environment', async () => {
    const { port, router } = await start({
      handler: later(20),
    });
    const asterisk = await FakeAsterisk.connect(port);
    asterisk.send(environmentText());
    asterisk.end();
    await asterisk.closed;
    await until(() => router.connections() === 0);
    await stillAnswers(port);
  });

  it('drops garbage and binary without calling the handler', async () => {
    const { port, calls, log } = await start();
    const inputs: Array<string | Buffer> = [
      'GET / HTTP/1.1\r\nHost: x\r\n\r\n',
      randomBytes(4096),
      Buffer.from([0, 0, 0, 10, 255, 254, 10, 10]),
      'agi_request: x\n\n\u00ff\u00fe\n',
      '\n\n\n',
      'HANGUP\nHANGUP\n',
    ];
    for (const input of inputs) {
      const peer = await FakeAsterisk.connect(port);
      peer.send(input);
      const closed = await peer.closed;
      expect(closed.afterMs).toBeLessThan(1000);
      expect(peer.received).not.toContain('BRIDGE');
    }
    expect(calls).toEqual([]);
    expect(warnings(log).length).toBeGreaterThan(0);
    await stillAnswers(port);
  });

  it('survives 300 random and mutated connections and still answers', async () => {
    const { port } = await start({ deadlineMs: 300 });
    const base = environmentText();
    const mutate = (): Buffer => {
      const bytes = Buffer.from(base);
      const kind = Math.floor(Math.random() * 4);
      if (kind === 0) return randomBytes(1 + Math.floor(Math.random() * 2000));
      if (kind === 1) return bytes.subarray(0, Math.floor(Math.random() * bytes.length)); // truncated
      for (let n = 0; n < 1 + Math.random() * 20; n++) bytes[Math.floor(Math.random() * bytes.length)] = Math.floor(Math.random() * 256);
      return kind === 2 ? bytes : Buffer.concat([bytes, Buffer.from('200 result=0\n510 x\nHANGUP\n')]);
    };
    const runs = Array.from({ length: 300 }, async () => {
      const peer = await FakeAsterisk.connect(port);
      peer.send(mutate());
      if (Math.random() < 0.3) peer.reset();
      else if (Math.random() < 0.5) {
        await sleep(Math.random() * 20);
        peer.send('200 result=0\n');
      }
      return peer.closed;
    });
    const closed = await Promise.all(runs);
    for (const c of closed) expect(c.afterMs).toBeLessThan(2000);
    await stillAnswers(port);
  });

  it('drops an over-long line without waiting for its end', async () => {
    const { port, log } = await start();
    const peer = await FakeAsterisk.connect(port);
    peer.send('agi_network: yes\nagi_request: ' + 'x'.repeat(6000));
    const closed = await peer.closed;
    expect(closed.afterMs).toBeLessThan(1000);
    expect(warnings(log)[0]).toMatchObject({ code: 'AGI_LINE_TOO_LONG' });
  });
});

describe('handler failures', () => {
  it.each([
    [
      'throws',
      () => {
        throw new Error('database locked for +447700900123');
      },
    ],
    ['rejects', () => Promise.reject(new Error('database locked'))],
    ['returns nothing', () => undefined as unknown as AgiAnswer],
    ['returns a variable name that is not one', () => ({ variables: [['VNUM_STATUS=BRIDGE,X', 'BRIDGE']] }) as AgiAnswer],
    ['returns a value with a line break (a second AGI command)', () => ({ variables: [['VNUM_TARGET', '1"\nEXEC System "touch /tmp/pwned']] }) as AgiAnswer],
    ['returns a number instead of a string', () => ({ variables: [['VNUM_TARGET', 447700900789]] }) as unknown as AgiAnswer],
    [
      'returns an object whose getter throws',
      () =>
        ({
          get variables(): never {
            throw new Error('getter');
          },
        }) as unknown as AgiAnswer,
    ],
    [
      'resolves to an object whose getter throws',
      async () =>
        ({
          get variables(): never {
            throw new Error('getter');
          },
        }) as unknown as AgiAnswer,
    ],
    [
      'returns a thenable whose then throws',
      () =>
        ({
          then() {
            throw new Error('bad thenable');
          },
        }) as unknown as Promise<AgiAnswer>,
    ],
  ])('writes the fallback answer when the handler %s, and logs it', async (_what, handler) => {
    const { port, log } = await start({ handler });
    const { command } = await placeCall(port);
    expect(command).toBe(ERROR_COMMAND);
    expect(log.records().filter((r) => r.level === 50)).toHaveLength(1);
  });

  it('writes nothing when the peer left while the handler ran', async () => {
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const { port, router } = await start({
      handler: async () => {
        await gate;
        return BRIDGE;
      },
    });
    const asterisk = await FakeAsterisk.connect(port);
    asterisk.send(environmentText());
    await until(() => router.connections() === 1);
    await sleep(10);
    asterisk.destroy();
    await until(() => router.connections() === 0);
    release();
    await sleep(10);
    await stillAnswers(port);
  });
});

describe('allow-list', () => {
  it('destroys a connection from an address not allowed, before reading anything', async () => {
    const { port, calls, log, router } = await start({ allow: ['127.0.0.1'] });
    const outsider = await FakeAsterisk.connect(port, { localAddress: '127.0.0.2' });
    outsider.send(environmentText());
    const closed = await outsider.closed;
    expect(closed.afterMs).toBeLessThan(1000);
    expect(outsider.received).toBe('');
    expect(calls).toEqual([]);
    expect(router.connections()).toBe(0);
    const [warning] = warnings(log);
    expect(warning).toMatchObject({ msg: 'FastAGI connection refused: address not in allow-list', address: '127.0.0.2' });
    expect(JSON.stringify(warning)).not.toContain('447700900');
    await stillAnswers(port);
  });

  it('a flood of refused peers writes at most 20 warnings a second, the rest counted', async () => {
    let now = Date.now();
    const log = captureLog({ now: () => now });
    const { port } = await start({ allow: ['127.0.0.1'] }, log);
    const outsiders = await Promise.all(Array.from({ length: 60 }, () => FakeAsterisk.connect(port, { localAddress: '127.0.0.2' })));
    await Promise.all(outsiders.map((o) => o.closed));
    const refused = () => warnings(log).filter((w) => w.msg === 'FastAGI connection refused: address not in allow-list');
    expect(refused()).toHaveLength(20);
    now += 1_000;
    await (await FakeAsterisk.connect(port, { localAddress: '127.0.0.2' })).closed;
    expect(refused().at(-1)).toMatchObject({ suppressed: 40 });
  });

  it('admits a subnet', async () => {
    const { port } = await start({ allow: ['127.0.0.0/8'] });
    const asterisk = await FakeAsterisk.connect(port, { localAddress: '127.0.0.2' });
    asterisk.send(environmentText());
    expect(await asterisk.nextLine()).toBe(BRIDGE_COMMAND);
  });

  itWhen(noDualStack, 'judges an IPv4-mapped IPv6 peer as its IPv4 address', async () => {
    const { port, log } = await start({ host: '::', allow: ['127.0.0.1'] });
    const inside = await FakeAsterisk.connect(port, { host: '127.0.0.1' });
    inside.send(environmentText());
    expect(await inside.nextLine()).toBe(BRIDGE_COMMAND);
    const outside = await FakeAsterisk.connect(port, { host: '127.0.0.1', localAddress: '127.0.0.2' });
    await outside.closed;
    expect(outside.received).toBe('');
    expect(warnings(log)[0]).toMatchObject({ address: '::ffff:127.0.0.2' });
  });

  it('parses addresses and subnets, and refuses anything else', () => {
    const list = new AllowList(['127.0.0.1', '0:0:0:0:0:0:0:1', '10.1.0.0/16', 'fd00::/8']);
    expect(list.allows('127.0.0.1')).toBe(true);
    expect(list.allows('::ffff:127.0.0.1')).toBe(true);
    expect(list.allows('::FFFF:127.0.0.1')).toBe(true);
    expect(list.allows('::1')).toBe(true);
    expect(list.allows('10.1.200.3')).toBe(true);
    expect(list.allows('::ffff:10.1.200.3')).toBe(true);
    expect(list.allows('fd12::5')).toBe(true);
    expect(list.allows('10.2.0.1')).toBe(false);
    expect(list.allows('127.0.0.2')).toBe(false);
    expect(list.allows(undefined)).toBe(false);
    expect(() => new AllowList(['localhost'])).toThrow(/not an IP address/);
    expect(() => new AllowList(['10.0.0.0/33'])).toThrow(/CIDR/);
    expect(() => new AllowList(['*'])).toThrow();
  });

  it('refuses an allow-list that can only refuse everyone, or that admits everyone', () => {
    // Empty: the router would refuse every call, Asterisk's included (VNUM_AGI_ALLOW= did exactly that).
    expect(() => new AllowList([])).toThrow(/empty/);
    for (const all of ['0.0.0.0/0', '::/0', '10.0.0.0/0']) expect(() => new AllowList([all]), all).toThrow(/admits every address/);
    for (const none of ['0.0.0.0', '::', '0:0:0:0:0:0:0:0']) expect(() => new AllowList([none]), none).toThrow(/unspecified address/);
    expect(new AllowList(['0.0.0.0/1']).allows('1.2.3.4')).toBe(true);
  });
});

describe('maxConnections', () => {
  it('refuses a connection beyond the cap at once when every connection is in the handler', async () => {
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const { port, router, log } = await start({
      maxConnections: 2,
      handler: async () => {
        await gate;
        return BRIDGE;
      },
    });
    const busy = await Promise.all([FakeAsterisk.connect(port), FakeAsterisk.connect(port)]);
    for (const b of busy) b.send(environmentText());
    await until(() => router.connections() === 2);
    await sleep(20);
    const third = await FakeAsterisk.connect(port);
    third.send(environmentText());
    const closed = await third.closed;
    expect(closed.afterMs).toBeLessThan(500);
    expect(third.received).toBe('');
    expect(router.connections()).toBe(2);
    expect(warnings(log).at(-1)).toMatchObject({ msg: 'FastAGI connection refused: at maxConnections', maxConnections: 2 });
    release();
    for (const b of busy) {
      expect(await b.nextLine()).toBe(BRIDGE_COMMAND);
      b.send('200 result=0\n');
    }
  });

  it('lets a real call in by evicting the oldest idle connection', async () => {
    const { port, router, log } = await start({ maxConnections: 3 });
    const idle = [];
    for (let i = 0; i < 3; i++) {
      idle.push(await FakeAsterisk.connect(port));
      await until(() => router.connections() === i + 1);
    }
    const { command } = await placeCall(port);
    expect(command).toBe(BRIDGE_COMMAND);
    expect((await idle[0]!.closed).afterMs).toBeLessThan(1000);
    expect(idle[1]!.socket.destroyed).toBe(false);
    expect(router.connections()).toBeLessThanOrEqual(3);
    expect(warnings(log).map((w) => w.msg)).toContain('FastAGI at maxConnections: oldest idle connection evicted');
  });

  it('holds the cap under 1,000 idle connections and answers a call during the attack', async () => {
    const { port, router } = await start({ maxConnections: 64, deadlineMs: 5000 });
    const attackers = await Promise.all(
      Array.from({ length: 1000 }, () => FakeAsterisk.connect(port).catch(() => undefined)),
    );
    await sleep(50);
    expect(router.connections()).toBeLessThanOrEqual(64);
    const { command } = await placeCall(port);
    expect(command).toBe(BRIDGE_COMMAND);
    for (const a of attackers) a?.destroy();
    await until(() => router.connections() === 0);
  });
});

describe('close()', () => {
  it('lets connections in flight finish, refuses new ones, and resolves when all are gone', async () => {
    const { port, router } = await start({
      handler: later(100),
    });
    const inFlight = await FakeAsterisk.connect(port);
    inFlight.send(environmentText());
    await until(() => router.connections() === 1);
    const closing = router.close(2000);
    let done = false;
    void closing.then(() => (done = true));
    await expect(FakeAsterisk.connect(port)).rejects.toMatchObject({ code: 'ECONNREFUSED' });
    expect(await inFlight.nextLine()).toBe(BRIDGE_COMMAND);
    expect(done).toBe(false);
    inFlight.send('200 result=0\n');
    await closing;
    expect(router.connections()).toBe(0);
  });

  it('destroys connections still open after drainMs', async () => {
    const { port, router } = await start({ deadlineMs: 10_000 });
    const idle = await FakeAsterisk.connect(port);
    await until(() => router.connections() === 1);
    const started = Date.now();
    await router.close(100);
    expect(Date.now() - started).toBeGreaterThanOrEqual(90);
    expect(Date.now() - started).toBeLessThan(1000);
    expect((await idle.closed).afterMs).toBeLessThan(1500);
    expect(router.connections()).toBe(0);
    expect(router.close()).toBe(router.close()); // idempotent
  });

  it('resolves at once with nothing open', async () => {
    const { router } = await start();
    const started = Date.now();
    await router.close();
    expect(Date.now() - started).toBeLessThan(500);
  });
});

describe('start-up and logging', () => {
  it('rejects a port already in use instead of crashing', async () => {
    const { port } = await start();
    await expect(startFastAgiServer({ port, handler: () => BRIDGE, fallback: FALLBACK, logger: captureLog().logger })).rejects.toMatchObject({
      code: 'EADDRINUSE',
    });
  });

  it('refuses bad options', async () => {
    const answers = { handler: () => BRIDGE, fallback: FALLBACK };
    await expect(startFastAgiServer({ port: 0, ...answers, maxConnections: 0 })).rejects.toThrow(/maxConnections/);
    await expect(startFastAgiServer({ port: 0, ...answers, deadlineMs: -1 })).rejects.toThrow(/deadlineMs/);
    // Node keeps a timer of at most 2^31-1 ms: a longer deadline would fire after 1 ms and drop the call.
    await expect(startFastAgiServer({ port: 0, ...answers, deadlineMs: 2 ** 31 })).rejects.toThrow(/deadlineMs must be an integer from 1 to 2147483647/);
    await expect(startFastAgiServer({ port: 0, ...answers, allow: [] })).rejects.toThrow(/allow-list is empty/);
    await expect(startFastAgiServer({ port: 70000, ...answers })).rejects.toThrow(/port/);
    await expect(startFastAgiServer({ port: 0, ...answers, allow: ['everyone'] })).rejects.toThrow(/allow-list/);
    await expect(startFastAgiServer({ port: 0, fallback: FALLBACK } as FastAgiServerOptions)).rejects.toThrow(/handler/);
    await expect(startFastAgiServer({ port: 0, handler: () => BRIDGE } as unknown as FastAgiServerOptions)).rejects.toThrow(/fallback/);
  });

  it('VNUM_LOG_REDACT=off: the same line with the numbers in full (the router does not redact behind the operator\'s back)', async () => {
    const log = captureLog({ redact: false });
    const { port } = await start({}, log);
    await placeCall(port);
    await until(() => log.records().some((r) => r.msg === 'FastAGI connection'));
    expect(log.records().find((r) => r.msg === 'FastAGI connection')).toMatchObject({ caller: '+447700900123', dialled: '+447700900456' });
  });

  it('bounds what a caller controls in a log line: a 4000-character caller ID is clipped', async () => {
    const log = captureLog({ redact: false });
    const { port } = await start({}, log);
    await placeCall(port, { agi_callerid: `+44${'7'.repeat(3998)}` });
    await until(() => log.records().some((r) => r.msg === 'FastAGI connection'));
    const line = log.lines.find((l) => l.includes('FastAGI connection'))!;
    expect(line.length).toBeLessThan(1000);
  });
});

describe('the health probe (vnum health)', () => {
  it('is answered with one fixed command, without calling the handler or logging above debug', async () => {
    const log = captureLog();
    const { port, calls } = await start({}, log);
    expect(await probeRouter('127.0.0.1', port, 2000)).toEqual({ ok: true });
    // As Asterisk would send it, step by step: the answer carries nothing.
    const asterisk = await FakeAsterisk.connect(port);
    asterisk.send(probeEnvironment('127.0.0.1', port));
    expect(await asterisk.nextLine()).toBe(HEALTH_PROBE_ANSWER);
    expect(HEALTH_PROBE_ANSWER).toBe('SET VARIABLE "VNUM_HEALTH" "OK"');
    asterisk.send('200 result=1\n');
    expect((await asterisk.closed).hadError).toBe(false);
    expect(calls).toEqual([]);
    expect(log.records().filter((r) => (r.level as number) >= 30 && r.msg !== 'FastAGI router listening')).toEqual([]);
    await until(() => log.records().filter((r) => r.msg === 'FastAGI connection' && r.outcome === 'probe').length === 2);
    await stillAnswers(port);
  });

  it('a real call naming the probe script gets only the probe answer: no handler, no number', async () => {
    const { port, calls } = await start();
    const { command } = await placeCall(port, { agi_network_script: 'vnum-health' });
    expect(command).toBe(HEALTH_PROBE_ANSWER);
    expect(calls).toEqual([]);
  });

  it('reports a router that refuses the probe\'s address, naming that address', async () => {
    const log = captureLog();
    const { port } = await start({ allow: ['10.9.9.9'] }, log);
    const result = await probeRouter('127.0.0.1', port, 2000);
    expect(result.ok).toBe(false);
    expect(!result.ok && result.error).toMatch(/closed the connection without answering: 127\.0\.0\.1 is not in its allow-list/);
    expect(warnings(log)[0]).toMatchObject({ msg: 'FastAGI connection refused: address not in allow-list' });
  });

  it('reports a router at its connection cap, and one that is stopping', async () => {
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const { port, router } = await start({ maxConnections: 1, handler: async () => { await gate; return BRIDGE; } });
    const busy = await FakeAsterisk.connect(port);
    busy.send(environmentText());
    await sleep(50);
    expect((await probeRouter('127.0.0.1', port, 2000)).ok).toBe(false);
    release();
    expect(await busy.nextLine()).toBe(BRIDGE_COMMAND);
    busy.send('200 result=0\n');
    await busy.closed;
    expect(await probeRouter('127.0.0.1', port, 2000)).toEqual({ ok: true });
    await router.close(0);
    expect(await probeRouter('127.0.0.1', port, 2000)).toMatchObject({ ok: false, error: expect.stringMatching(/not listening: ECONNREFUSED/) });
  });

  it('tells apart nothing listening, something silent, and something that is not a vnum router', async () => {
    const probe = net.createServer();
    await new Promise<void>((r) => probe.listen(0, '127.0.0.1', r));
    const free = (probe.address() as net.AddressInfo).port;
    await new Promise((r) => probe.close(r));
    expect(await probeRouter('127.0.0.1', free, 1000)).toMatchObject({ ok: false, error: expect.stringMatching(/not listening: ECONNREFUSED/) });

    const sockets: net.Socket[] = [];
    const silent = net.createServer((s) => void sockets.push(s));
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
    const other = net.createServer((s) => s.end('SSH-2.0-OpenSSH_9.2\r\n'));
    await new Promise<void>((r) => other.listen(0, '127.0.0.1', r));
    try {
      expect(await probeRouter('127.0.0.1', (silent.address() as net.AddressInfo).port, 300)).toEqual({
        ok: false,
        error: 'connected, but no answer within 300 ms',
      });
      expect(await probeRouter('127.0.0.1', (other.address() as net.AddressInfo).port, 1000)).toMatchObject({
        ok: false,
        error: expect.stringMatching(/not a vnum router .*"SSH-2\.0-OpenSSH_9\.2"/),
      });
    } finally {
      for (const s of sockets) s.destroy();
      silent.close();
      other.close();
    }
  });

  it('the probe is held to the deadline like any connection', async () => {
    const { port } = await start({ deadlineMs: 200 });
    const asterisk = await FakeAsterisk.connect(port);
    asterisk.send(probeEnvironment('127.0.0.1', port));
    expect(await asterisk.nextLine()).toBe(HEALTH_PROBE_ANSWER);
    // Never replies: the router does not wait past its deadline.
    const closed = await asterisk.closed;
    expect(closed.afterMs).toBeLessThan(1500);
  });
});
