/**
 * ding-dong 0.1.7's defects (agi/README.md, "ding-dong"), each shown on
 * the library itself and then on our code with the same input. If our cover
 * were removed (the server falling back to ding-dong's Context, its parser or
 * its command helpers), the "ours" half of the matching test fails.
 */
import net from 'node:net';
import { Duplex } from 'node:stream';
import { afterEach, describe, expect, it, vi } from 'vitest';
import dingDong from 'ding-dong';
import Context from 'ding-dong/lib/context.js';
import { startFastAgiServer, type AgiAnswer, type FastAgiServer } from '../../agi/server.js';
import { AgiWire, buildCommand, buildExec, buildMSet, type AgiEnvironment, type AgiReply } from '../../agi/wire.js';
import { parseAgiArgs } from '../support/asterisk-model.js';
import { FakeAsterisk, environmentText, placeCall } from '../support/fake-asterisk.js';
import { captureLog } from '../support/log.js';
import { until } from '../support/wait.js';

const tick = (): Promise<void> => new Promise((r) => setImmediate(r));

/** ding-dong's Context over an in-memory socket: what it writes, and a way to feed it Asterisk's bytes. */
function rawContext() {
  const written: string[] = [];
  const socket = new Duplex({
    read() {},
    write(chunk: Buffer, _encoding, callback) {
      written.push(String(chunk));
      callback();
    },
  });
  const context = new Context(socket);
  const feed = async (text: string): Promise<void> => {
    socket.push(text);
    await tick();
  };
  return { context, socket, written, feed };
}

/** Our wire, fed the same bytes. */
function ourWire() {
  const written: string[] = [];
  let environment: AgiEnvironment | undefined;
  const wire = new AgiWire({
    write: (d) => void written.push(d),
    onEnvironment: (env) => (environment = env),
    onFailure: () => {},
  });
  return { wire, written, environment: () => environment };
}

async function isPending(promise: Promise<unknown>): Promise<boolean> {
  const pending = Symbol();
  const winner = await Promise.race([promise.then(() => 'settled', () => 'settled'), new Promise((r) => setTimeout(() => r(pending), 30))]);
  return winner === pending;
}

const BRIDGE: AgiAnswer = {
  variables: [
    ['VNUM_STATUS', 'BRIDGE'],
    ['VNUM_TARGET', '+447700900789'],
    ['VNUM_CLI', '+447700900111'],
    ['VNUM_SESSION', 's1'],
  ],
};
const ERROR: AgiAnswer = { variables: [['VNUM_STATUS', 'ERROR'], ['VNUM_TARGET', ''], ['VNUM_CLI', ''], ['VNUM_SESSION', '']] };
const HANDLER = (): AgiAnswer => BRIDGE;
const servers: FastAgiServer[] = [];
async function server(): Promise<{ port: number; calls: Array<{ request: string | undefined }> }> {
  const calls: Array<{ request: string | undefined }> = [];
  const r = await startFastAgiServer({
    port: 0,
    logger: captureLog().logger,
    fallback: ERROR,
    handler: (env) => (calls.push({ request: env.get('agi_request') }), BRIDGE),
  });
  servers.push(r);
  return { port: r.address().port, calls };
}
afterEach(async () => {
  await Promise.all(servers.splice(0).map((r) => r.close(0)));
  vi.restoreAllMocks();
});

describe('ding-dong defect 1: environment split on every ":"', () => {
  it('library: agi_request becomes "agi", a caller name "Acme: Sales" becomes "Acme"', async () => {
    const raw = rawContext();
    await raw.feed(environmentText());
    expect(raw.context.variables.agi_request).toBe('agi');
    expect(raw.context.variables.agi_calleridname).toBe('Acme');
  });

  it('ours: split on the first ": " only, through the wire and through the server', async () => {
    const ours = ourWire();
    ours.wire.push(environmentText());
    expect(ours.environment()?.get('agi_request')).toBe('agi://127.0.0.1:4573/route');
    expect(ours.environment()?.get('agi_calleridname')).toBe('Acme: Sales');
    const { port, calls } = await server();
    await placeCall(port);
    expect(calls[0]?.request).toBe('agi://127.0.0.1:4573/route');
  });
});

describe('ding-dong defect 2: one pending slot, no queue', () => {
  it('library: two commands go out together; the first never settles, the second gets the first reply', async () => {
    const raw = rawContext();
    await raw.feed(environmentText());
    const first = raw.context.sendCommand('GET VARIABLE A');
    const second = raw.context.sendCommand('GET VARIABLE B');
    expect(raw.written).toEqual(['GET VARIABLE A\n', 'GET VARIABLE B\n']); // pipelined
    await raw.feed('200 result=1 (value of A)\n');
    expect(await second).toMatchObject({ value: 'value of A' });
    expect(await isPending(first)).toBe(true);
  });

  it('ours: the second waits for the first reply, and each gets its own', async () => {
    const ours = ourWire();
    ours.wire.push(environmentText());
    const first = ours.wire.send('GET VARIABLE A');
    const second = ours.wire.send('GET VARIABLE B');
    expect(ours.written).toEqual(['GET VARIABLE A\n']);
    ours.wire.push('200 result=1 (value of A)\n');
    expect(await first).toMatchObject({ data: 'value of A' });
    expect(ours.written).toEqual(['GET VARIABLE A\n', 'GET VARIABLE B\n']);
    ours.wire.push('200 result=1 (value of B)\n');
    expect(await second).toMatchObject({ data: 'value of B' });
  });
});

describe('ding-dong defect 3: non-result lines become "hangup", pending hangs, close rejects nothing', () => {
  it('library: HANGUP, 510 and a multi-line 520 each fire "hangup" and leave the command hanging, even after close', async () => {
    const raw = rawContext();
    await raw.feed(environmentText());
    let hangups = 0;
    raw.context.on('hangup', () => hangups++);
    const command = raw.context.sendCommand('BOGUS');
    await raw.feed('HANGUP\n');
    await raw.feed('510 Invalid or unknown command\n');
    await raw.feed('520-Invalid command syntax.  Proper usage follows:\n Usage: BOGUS\n520 End of proper usage.\n');
    expect(hangups).toBe(5);
    raw.socket.destroy();
    await tick();
    expect(await isPending(command)).toBe(true);
  });

  it('library: "100 result=0 Trying..." is taken as the final reply', async () => {
    const raw = rawContext();
    await raw.feed(environmentText());
    const command = raw.context.sendCommand('GOSUB ctx s 1');
    await raw.feed('100 result=0 Trying...\n');
    expect(await command).toMatchObject({ code: 100 });
  });

  it('ours: HANGUP is skipped, 510/511/520 and 100-then-200 settle correctly, close rejects', async () => {
    const ours = ourWire();
    ours.wire.push(environmentText());
    const replies: Array<Promise<AgiReply>> = [];
    replies.push(ours.wire.send('BOGUS'));
    ours.wire.push('HANGUP\n510 Invalid or unknown command\n');
    replies.push(ours.wire.send('EXEC'));
    ours.wire.push('520-Invalid command syntax.  Proper usage follows:\n Usage: EXEC\n520 End of proper usage.\n');
    replies.push(ours.wire.send('GOSUB ctx s 1'));
    ours.wire.push('100 result=0 Trying...\n200 result=0 Gosub complete\n');
    expect((await Promise.all(replies)).map((r) => r.code)).toEqual([510, 520, 200]);
    const hanging = ours.wire.send('NOOP');
    ours.wire.close();
    await expect(hanging).rejects.toMatchObject({ code: 'AGI_CLOSED' });
  });
});

describe('ding-dong defect 4: a partial trailing line is dropped', () => {
  it('library: a reply split after a complete line is lost', async () => {
    const raw = rawContext();
    await raw.feed(environmentText());
    const command = raw.context.sendCommand('NOOP');
    await raw.feed('HANGUP\n200 res');
    await raw.feed('ult=0\n');
    expect(await isPending(command)).toBe(true);
  });

  it('ours: the partial line is kept and completed by the next chunk', async () => {
    const ours = ourWire();
    ours.wire.push(environmentText());
    const command = ours.wire.send('NOOP');
    ours.wire.push('HANGUP\n200 res');
    ours.wire.push('ult=0\n');
    expect(await command).toMatchObject({ code: 200, result: '0' });
  });
});

describe('ding-dong defect 5: errors crash the process', () => {
  it('library: a socket error re-emitted on a Context nobody listens to throws', () => {
    const raw = rawContext();
    const reset = Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET' });
    expect(() => raw.socket.emit('error', reset)).toThrow(/ECONNRESET/);
  });

  it('library: its net.Server has no error listener, and a throwing handler escapes the connection event', async () => {
    const server = dingDong(() => {
      throw new Error('boom in handler');
    }).start('0', '127.0.0.1');
    try {
      expect(server.listenerCount('error')).toBe(0);
      const [onConnection] = server.listeners('connection') as Array<(socket: Duplex) => void>;
      expect(() => onConnection!(new Duplex({ read() {}, write(_c, _e, cb) { cb(); } }))).toThrow('boom in handler');
    } finally {
      await new Promise((r) => server.close(r));
    }
  });

  it('ours: resets, a busy port and a throwing handler are all handled, and the server keeps answering', async () => {
    const { port } = await server();
    for (let i = 0; i < 5; i++) {
      const asterisk = await FakeAsterisk.connect(port);
      asterisk.send(environmentText().slice(0, 40 * i));
      asterisk.reset();
    }
    await expect(startFastAgiServer({ port, handler: HANDLER, fallback: ERROR, logger: captureLog().logger })).rejects.toMatchObject({ code: 'EADDRINUSE' });
    const throwing = await startFastAgiServer({
      port: 0,
      logger: captureLog().logger,
      fallback: ERROR,
      handler: () => {
        throw new Error('boom in the handler');
      },
    });
    servers.push(throwing);
    expect((await placeCall(throwing.address().port)).command).toBe('EXEC MSet "VNUM_STATUS=ERROR,VNUM_TARGET=,VNUM_CLI=,VNUM_SESSION="');
    expect((await placeCall(port)).command).toContain('VNUM_STATUS=BRIDGE');
  });
});

describe('ding-dong defect 6: no escaping', () => {
  it('library: a newline in a value starts a second AGI command; extra exec arguments are dropped by Asterisk', () => {
    const raw = rawContext();
    void raw.context.setVariable('VNUM_TARGET', '1"\nEXEC System "touch /tmp/pwned');
    const lines = raw.written.join('').split('\n').filter(Boolean);
    expect(lines).toHaveLength(2);
    expect(lines[1]).toMatch(/^EXEC System/);
    void raw.context.exec('Dial', 'PJSIP/+447700900789@trunk', '30');
    const argv = parseAgiArgs(raw.written.at(-1)!.trimEnd());
    expect(argv.slice(0, 3)).toEqual(['EXEC', 'Dial', 'PJSIP/+447700900789@trunk']); // handle_exec uses argv[2] only
    expect(argv[3]).toBe('30'); // ...so the timeout never reaches Dial
  });

  it('ours: line breaks refused, quotes and backslashes escaped, application data one token', () => {
    expect(() => buildMSet([['VNUM_TARGET', '1"\nEXEC System "touch /tmp/pwned']])).toThrow(/CR, LF or NUL/);
    expect(parseAgiArgs(buildCommand('SET VARIABLE', ['X', 'say "hi" \\o/']))).toEqual(['SET', 'VARIABLE', 'X', 'say "hi" \\o/']);
    expect(parseAgiArgs(buildExec('Dial', 'PJSIP/+447700900789@trunk,30'))).toEqual(['EXEC', 'Dial', 'PJSIP/+447700900789@trunk,30']);
  });
});

describe('ding-dong defect 7: onEvent uses on, not once', () => {
  it('library: every wait leaves a listener behind', () => {
    const raw = rawContext();
    vi.spyOn(process, 'emitWarning').mockImplementation(() => {}); // MaxListenersExceededWarning
    for (let i = 0; i < 12; i++) void raw.context.onEvent('response');
    expect(raw.context.listenerCount('response')).toBe(12);
  });

  it('ours: a session adds the same listeners to its socket however many lines and chunks arrive', async () => {
    const { port } = await server();
    const serverSockets: net.Socket[] = [];
    const on = vi.spyOn(net.Socket.prototype, 'on');
    const counts = async (noisy: boolean): Promise<number> => {
      const before = on.mock.calls.length;
      const asterisk = await FakeAsterisk.connect(port);
      if (noisy) await asterisk.sendInChunks(environmentText(), [7]);
      else asterisk.send(environmentText());
      await asterisk.nextLine();
      if (noisy) await asterisk.sendInChunks('HANGUP\n'.repeat(50) + '200 result=0\n', [5]);
      else asterisk.send('200 result=0\n');
      await asterisk.closed;
      await until(() => serverSockets.every((s) => s.destroyed));
      let added = 0;
      for (let i = before; i < on.mock.calls.length; i++) {
        const self = on.mock.contexts[i] as net.Socket & { server?: unknown };
        if (self.server) {
          added++;
          if (!serverSockets.includes(self)) serverSockets.push(self);
        }
      }
      return added;
    };
    const quiet = await counts(false);
    const noisy = await counts(true);
    expect(quiet).toBeGreaterThan(0);
    expect(noisy).toBe(quiet);
  });
});

describe('ding-dong, one more: start(0) listens on 3000', () => {
  it('library: `portIn || settings.port` turns port 0 into 3000; ours binds a free port', async () => {
    const library = dingDong(() => {}).start(0, '127.0.0.1');
    const port = await new Promise<number>((resolve) => {
      library.once('listening', () => resolve((library.address() as net.AddressInfo).port));
      library.once('error', (e: NodeJS.ErrnoException & { port?: number }) => resolve(e.port ?? -1)); // 3000 already taken
    });
    await new Promise((r) => library.close(r));
    expect(port).toBe(3000);
    const { port: ours } = await server();
    expect(ours).not.toBe(3000);
    expect(ours).toBeGreaterThan(0);
  });
});
