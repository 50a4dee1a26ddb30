import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { vnum } from '../support/cli.js';
import { placeCall } from '../support/fake-asterisk.js';
import { freePort } from '../support/net.js';
import { startServe, type Serve } from '../support/serve.js';
import { sleep } from '../support/wait.js';

let dir: string;
let db: string;
let server: Serve | undefined;

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'vnum-serve-metrics-'));
  db = join(dir, 'vnum.db');
});
afterEach(async () => {
  await server?.stop();
  server = undefined;
  rmSync(dir, { recursive: true, force: true });
});

const A = '+447911000001';
const D = '+447911000002';

async function scrape(port: number): Promise<Map<string, number>> {
  const response = await fetch(`http://127.0.0.1:${port}/metrics`);
  expect(response.status).toBe(200);
  expect(response.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
  const out = new Map<string, number>();
  for (const line of (await response.text()).split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const at = line.lastIndexOf(' ');
    out.set(line.slice(0, at), Number(line.slice(at + 1)));
  }
  return out;
}

describe('vnum serve --metrics-port (built executable)', () => {
  it('serves what it routes, its connections and the store figures on a loopback port of its own', async () => {
    expect(vnum(['--db', db, 'pool', 'add', '+442079460001', '+442079460002']).code).toBe(0);
    expect(vnum(['--db', db, 'pool', 'add', '--reserved', '+442079460003']).code).toBe(0);
    const session = JSON.parse(vnum(['--db', db, 'session', 'create', 'o1', A, D, '--json']).stdout);
    const dMasked = session.parties[1].maskedAs as string;
    const metricsPort = await freePort();
    server = await startServe({ db, env: { VNUM_METRICS_PORT: String(metricsPort) }, args: ['--metrics-store-age', '1s'] });
    expect(server.lines().join('\n')).toContain(`"metrics":"127.0.0.1:${metricsPort}"`);

    await placeCall(server.port, { agi_callerid: A, agi_extension: dMasked });
    await placeCall(server.port, { agi_callerid: '+447911000099', agi_extension: dMasked });
    expect(vnum(['--db', db, 'health', '--port', String(server.port)]).code).toBe(0);
    // Created after the start: seen once the figures are read again (--metrics-store-age 1s).
    expect(vnum(['--db', db, 'session', 'create', 'o2', A, '+447911000003']).code).toBe(0);

    let s = await scrape(metricsPort);
    const deadline = Date.now() + 10_000;
    while (s.get('vnum_sessions{state="active"}') !== 2) {
      if (Date.now() > deadline) throw new Error(`the figures never showed both sessions: ${JSON.stringify([...s])}`);
      await sleep(200);
      s = await scrape(metricsPort);
    }
    expect(s.get('vnum_calls_routed_total{status="BRIDGE"}')).toBe(1);
    expect(s.get('vnum_calls_routed_total{status="NO_SESSION"}')).toBe(1);
    expect(s.get('vnum_route_decision_seconds_count')).toBe(2);
    expect(s.get('vnum_agi_connections_ended_total{outcome="answered"}')).toBe(2);
    expect(s.get('vnum_agi_connections_ended_total{outcome="probe"}')).toBe(1);
    expect(s.get('vnum_agi_connections_max')).toBe(256);
    expect(s.get('vnum_pool_numbers{state="available"}')).toBe(2);
    expect(s.get('vnum_pool_numbers{state="reserved"}')).toBe(1);
    // A is in both sessions: 2 available numbers - 2.
    expect(s.get('vnum_party_live_sessions_max')).toBe(2);
    expect(s.get('vnum_pool_headroom')).toBe(0);
    expect(s.has('vnum_ami_connected'), 'no AMI configured: no AMI gauge').toBe(false);

    expect((await fetch(`http://127.0.0.1:${metricsPort}/`)).status).toBe(404);
    expect((await fetch(`http://127.0.0.1:${metricsPort}/metrics`, { method: 'POST', body: 'x' })).status).toBe(405);
    expect(await server.stop()).toBe(0);
    await expect(fetch(`http://127.0.0.1:${metricsPort}/metrics`)).rejects.toThrow();
  });

  it('is off unless asked for', async () => {
    server = await startServe({ db });
    expect(server.lines().join('\n')).toContain('"metrics":"off"');
  });

  it('a taken metrics port stops the start with VNUM_LISTEN_FAILED, and leaves no router listening', async () => {
    const taken = net.createServer();
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
    const { port } = taken.address() as net.AddressInfo;
    const agiPort = await freePort();
    try {
      const r = vnum(['--db', db, 'serve', '--port', String(agiPort), '--metrics-port', String(port)]);
      expect(r.code).toBe(1);
      // The metrics endpoint binds first: the router never listened.
      expect(r.stderr).not.toContain('FastAGI router listening');
      expect(r.stderr).toMatch(new RegExp(`(^|\n)vnum: cannot listen on 127.0.0.1:${port}: .*EADDRINUSE.* \\[VNUM_LISTEN_FAILED\\]\n$`));
    } finally {
      taken.close();
    }
  });
});
