import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { startApi, type ApiProcess } from '../support/api.js';
import { vnum } from '../support/cli.js';
import { placeCall } from '../support/fake-asterisk.js';
import { freePort } from '../support/net.js';
import { installPrometheus, prometheusBlocker, startPrometheus, type Prometheus } from '../support/prometheus/prometheus.js';
import { repoPath } from '../support/repo.js';
import { startServe, type Serve } from '../support/serve.js';
import { describeWhen } from '../support/suite.js';
import { sleep } from '../support/wait.js';

/**
 * A real Prometheus (Debian's package, installed by
 * test/support/prometheus/install.sh) scrapes the built `vnum serve` and
 * `vnum api`, each on a metrics port of its own, with
 * the shipped alert rules loaded, and the test reads what it scraped back
 * through Prometheus's own HTTP API. Prometheus and vnum each get free
 * loopback ports and a temporary folder: no fixed port, so no machine-wide lock.
 */

const A = '+447911000001';
const D = '+447911000002';

/** Polls an instant query until `accept` takes its result (Prometheus picks up new targets on a 5 s tick). */
async function queryUntil<T>(prometheus: Prometheus, expr: string, accept: (result: Awaited<ReturnType<Prometheus['query']>>) => T | undefined): Promise<T> {
  const deadline = Date.now() + 30_000;
  let last: unknown;
  for (;;) {
    const result = await prometheus.query(expr);
    const value = accept(result);
    if (value !== undefined) return value;
    last = result;
    if (Date.now() > deadline) throw new Error(`${expr}: not seen in 30 s; last ${JSON.stringify(last)}; targets ${JSON.stringify(await prometheus.targets())}`);
    await sleep(250);
  }
}

describeWhen(prometheusBlocker(), 'a real Prometheus scrapes vnum serve and vnum api', () => {
  let dir: string;
  let serve: Serve | undefined;
  let api: ApiProcess | undefined;
  let prometheus: Prometheus | undefined;
  let metricsPort: number;
  let apiMetricsPort: number;

  beforeAll(async () => {
    installPrometheus();
    dir = mkdtempSync(join(tmpdir(), 'vnum-prometheus-e2e-'));
    const db = join(dir, 'vnum.db');
    expect(vnum(['--db', db, 'pool', 'add', '+442079460001', '+442079460002', '+442079460003']).code).toBe(0);
    // Webhook events recorded and no deliverer: the session's session.created waits in the outbox.
    expect(vnum(['--db', db, 'webhooks', 'enable']).code).toBe(0);
    const session = JSON.parse(vnum(['--db', db, 'session', 'create', 'o1', A, D, '--json']).stdout);
    const dMasked = session.parties[1].maskedAs as string;
    metricsPort = await freePort();
    serve = await startServe({ db, args: ['--metrics-port', String(metricsPort)] });
    for (let i = 0; i < 3; i++) await placeCall(serve.port, { agi_callerid: A, agi_extension: dMasked });
    await placeCall(serve.port, { agi_callerid: '+447911000099', agi_extension: dMasked });

    apiMetricsPort = await freePort();
    api = await startApi({ db, args: ['--metrics-port', String(apiMetricsPort)] });
    const key = JSON.parse(vnum(['--db', db, 'apikey', 'create', '--name', 'support', '--scope', 'read', '--json']).stdout).key as string;
    const get = (path: string, withKey = true) => fetch(`${api!.url}${path}`, { headers: withKey ? { authorization: `Bearer ${key}` } : {} });
    expect((await get('/v1/sessions/o1')).status).toBe(200);
    expect((await get('/v1/sessions/o1')).status).toBe(200);
    expect((await get('/v1/sessions/no-such-order')).status).toBe(404);
    expect((await get('/v1/sessions/o1', false)).status).toBe(401);
    // A path that is no route, with a real number in it: counted as unmatched, never by its URL.
    expect((await get(`/v1/lookup/${A}`)).status).toBe(404);

    prometheus = await startPrometheus(
      [
        { job: 'vnum-serve', address: `127.0.0.1:${metricsPort}` },
        { job: 'vnum-api', address: `127.0.0.1:${apiMetricsPort}` },
      ],
      {
        ruleFiles: [repoPath('deploy/prometheus/vnum-alerts.yml')],
      },
    );
  }, 15 * 60_000);

  afterAll(async () => {
    await prometheus?.stop();
    await api?.stop();
    await serve?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('reads the calls routed by status back through the HTTP API, labelled with the job and the instance', async () => {
    const bridged = await queryUntil(prometheus!, 'vnum_calls_routed_total{status="BRIDGE"}', (r) => (r.length === 1 ? r[0] : undefined));
    expect(bridged.metric).toMatchObject({ __name__: 'vnum_calls_routed_total', job: 'vnum-serve', instance: `127.0.0.1:${metricsPort}`, status: 'BRIDGE' });
    expect(bridged.value[1]).toBe('3');
    const noSession = await prometheus!.query('vnum_calls_routed_total{status="NO_SESSION"}');
    expect(noSession[0]?.value[1]).toBe('1');
  });

  it("scrapes both processes and reads the API's requests by route template and status back", async () => {
    const byId = await queryUntil(prometheus!, 'vnum_api_requests_total{route="/v1/sessions/:id", status="200"}', (r) => (r.length === 1 ? r[0] : undefined));
    expect(byId.metric).toMatchObject({ job: 'vnum-api', instance: `127.0.0.1:${apiMetricsPort}`, method: 'GET' });
    expect(byId.value[1]).toBe('2');
    const all = await prometheus!.query('sum by (route, status) (vnum_api_requests_total)');
    const seen = Object.fromEntries(all.map((r) => [`${r.metric.route} ${r.metric.status}`, r.value[1]]));
    expect(seen).toMatchObject({ '/v1/sessions/:id 200': '2', '/v1/sessions/:id 404': '1', '/v1/sessions/:id 401': '1', 'unmatched 404': '1' });
    // No label of either process holds a number, a session id or a URL.
    for (const series of await prometheus!.query('{job=~"vnum-.*"}')) {
      for (const [label, value] of Object.entries(series.metric)) {
        if (label === 'instance' || label === 'le') continue;
        expect(value, `${series.metric.__name__}{${label}}`).not.toMatch(/\d{5}|o1|no-such-order|lookup/);
      }
    }
    const targets = await prometheus!.targets();
    expect(targets.map((t) => [t.labels.job, t.health]).sort()).toEqual([
      ['vnum-api', 'up'],
      ['vnum-serve', 'up'],
    ]);
  });

  it('computes the decision latency quantile and reads the pool headroom as Prometheus stored them', async () => {
    const p99 = await queryUntil(prometheus!, 'histogram_quantile(0.99, sum by (le) (vnum_route_decision_seconds_bucket))', (r) =>
      r.length === 1 && Number.isFinite(Number(r[0]!.value[1])) ? Number(r[0]!.value[1]) : undefined,
    );
    expect(p99).toBeGreaterThan(0);
    expect(p99).toBeLessThanOrEqual(1);
    // 3 available numbers, each party in one live session.
    const headroom = await queryUntil(prometheus!, 'vnum_pool_headroom', (r) => (r.length === 1 ? r[0]!.value[1] : undefined));
    expect(headroom).toBe('2');
    const backlog = await queryUntil(prometheus!, 'vnum_webhook_backlog', (r) => (r.length === 1 ? Number(r[0]!.value[1]) : undefined));
    expect(backlog).toBeGreaterThanOrEqual(1);
  });

  it('loads the shipped alert rules and evaluates them on what it scraped: headroom 2 is low (pending its 15 minutes), nothing else', async () => {
    const response = await fetch(`http://127.0.0.1:${prometheus!.port}/api/v1/rules`);
    const body = (await response.json()) as { data: { groups: Array<{ rules: Array<{ name: string; health: string; state: string; lastError?: string }> }> } };
    const rules = body.data.groups.flatMap((g) => g.rules);
    expect(rules.map((r) => r.name)).toEqual(expect.arrayContaining(['VnumRouterDown', 'VnumAmiDown', 'VnumPoolHeadroomLow']));
    // Wait for one evaluation of every rule after the first scrape.
    await queryUntil(prometheus!, 'up{job="vnum-serve"}', (r) => (r[0]?.value[1] === '1' ? true : undefined));
    await sleep(2_000);
    const again = (await (await fetch(`http://127.0.0.1:${prometheus!.port}/api/v1/rules`)).json()) as typeof body;
    for (const rule of again.data.groups.flatMap((g) => g.rules)) {
      expect(rule.health, `${rule.name}: ${rule.lastError ?? ''}`).toBe('ok');
      expect(rule.state, rule.name).toBe(rule.name === 'VnumPoolHeadroomLow' ? 'pending' : 'inactive');
    }
  });
});
