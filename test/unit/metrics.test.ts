import { afterEach, describe, expect, it } from 'vitest';
import pino from 'pino';
import { startFastAgiServer, type FastAgiServer } from '../../agi/server.js';
import { FALLBACK_ANSWER, routeCalls } from '../../src/cli/serve.js';
import { CachedFigures, type FiguresReader } from '../../src/metrics/cached-figures.js';
import { HttpMetrics } from '../../src/metrics/http.js';
import { DECISION_BUCKETS, Histogram, MetricsRegistry } from '../../src/metrics/prom.js';
import { ReplicaMetrics } from '../../src/metrics/replica.js';
import { RouterMetrics } from '../../src/metrics/router.js';
import type { NodeView } from '../../src/replica/cluster.js';
import type { ReplicaStatus } from '../../src/replica/consumer.js';
import type { Freshness } from '../../src/replica/freshness.js';
import { storeFigures, type StoreFigures } from '../../src/metrics/store-figures.js';
import { createSession, releaseSession } from '../../src/session/sessions.js';
import { collectStats } from '../../src/stats.js';
import { placeCall } from '../support/fake-asterisk.js';
import { londonDids, mobile, party, seedPool, tempDb } from '../support/store.js';
import { samples } from '../support/exposition.js';
import { until } from '../support/wait.js';

const silent = pino({ level: 'silent' });

describe('Histogram', () => {
  it('counts each observation in the first bucket at or above it, cumulative on export, with sum and count', () => {
    const h = new Histogram([0.001, 0.01, 0.1]);
    for (const v of [0.0005, 0.001, 0.005, 0.05, 3]) h.observe(v);
    const byName = new Map(h.samples('x').map((s) => [`${s.metricName}${s.labels ? JSON.stringify(s.labels) : ''}`, s.value]));
    expect(Object.fromEntries(byName)).toEqual({
      'x_bucket{"le":"0.001"}': 2,
      'x_bucket{"le":"0.01"}': 3,
      'x_bucket{"le":"0.1"}': 4,
      'x_bucket{"le":"+Inf"}': 5,
      x_sum: 0.0005 + 0.001 + 0.005 + 0.05 + 3,
      x_count: 5,
    });
    expect(() => new Histogram([0.1, 0.01])).toThrow(/ascend/);
  });

  it('has buckets fit for decisions of tens of microseconds: five below 1 ms, from 10 µs', () => {
    expect(DECISION_BUCKETS[0]).toBe(0.00001);
    expect(DECISION_BUCKETS.filter((b) => b < 0.001).length).toBeGreaterThanOrEqual(5);
  });
});

describe('MetricsRegistry', () => {
  it('refuses names outside the conventions: vnum_ prefix, _total for counters and only for them', () => {
    const r = new MetricsRegistry();
    expect(() => r.single('calls_total', 'h', 'counter', () => 1)).toThrow(/must match/);
    expect(() => r.single('vnum_calls', 'h', 'counter', () => 1)).toThrow(/_total/);
    expect(() => r.single('vnum_calls_total', 'h', 'gauge', () => 1)).toThrow(/_total/);
    expect(() => r.byLabel('vnum_x', 'h', 'gauge', 'Bad-Label', () => ({}))).toThrow(/label name/);
  });

  it('leaves a metric out of a scrape while its reader has nothing, and formats the rest', async () => {
    const r = new MetricsRegistry();
    let value: number | undefined;
    r.single('vnum_thing', 'A thing.', 'gauge', () => value);
    r.byLabel('vnum_things_total', 'Things.', 'counter', 'kind', () => ({ a: 1, b: 0 }));
    const before = samples((await r.exposition()).body);
    expect(before.has('vnum_thing')).toBe(false);
    expect(before.get('vnum_things_total{kind="a"}')).toBe(1);
    expect(before.get('vnum_things_total{kind="b"}')).toBe(0);
    value = 7;
    const after = await r.exposition();
    expect(samples(after.body).get('vnum_thing')).toBe(7);
    expect(after.body).toContain('# TYPE vnum_things_total counter');
    expect(after.contentType).toMatch(/^text\/plain; version=0\.0\.4/);
  });
});

describe('HttpMetrics', () => {
  it('counts requests by route template, method and status; a request that matched no route is `unmatched`, never its URL', async () => {
    const m = new HttpMetrics('vnum_api', 'HTTP API');
    m.observe('GET', '/v1/sessions/:id', 200, 0.002);
    m.observe('GET', '/v1/sessions/:id', 200, 0.003);
    m.observe('GET', '/v1/sessions/:id', 404, 0.001);
    m.observe('POST', '/v1/sessions', 201, 0.02);
    m.observe('GET', undefined, 404, 0.0005);
    const s = samples((await m.registry.exposition()).body);
    expect(s.get('vnum_api_requests_total{route="/v1/sessions/:id",method="GET",status="200"}')).toBe(2);
    expect(s.get('vnum_api_requests_total{route="/v1/sessions/:id",method="GET",status="404"}')).toBe(1);
    expect(s.get('vnum_api_requests_total{route="/v1/sessions",method="POST",status="201"}')).toBe(1);
    expect(s.get('vnum_api_requests_total{route="unmatched",method="GET",status="404"}')).toBe(1);
    expect(s.get('vnum_api_request_duration_seconds_count')).toBe(5);
    expect(s.get('vnum_api_request_duration_seconds_bucket{le="0.001"}')).toBe(2);
  });

  it('stops adding series at a bound, and still times every request', async () => {
    const m = new HttpMetrics('vnum_api', 'HTTP API');
    for (let status = 0; status < 1_200; status++) m.observe('GET', '/v1/x', status, 0.001);
    const body = (await m.registry.exposition()).body;
    expect(body.match(/^vnum_api_requests_total\{/gm)!.length).toBe(1_000);
    expect(samples(body).get('vnum_api_request_duration_seconds_count')).toBe(1_200);
  });
});

describe('store figures', () => {
  it('agree with vnum stats: pool and sessions by state, the busiest party, headroom = available - busiest', () => {
    const t = tempDb();
    try {
      const dids = londonDids(6);
      seedPool(t.db, dids.slice(0, 4));
      seedPool(t.db, dids.slice(4, 5), 'reserved');
      seedPool(t.db, dids.slice(5), 'retired');
      const now = 1_800_000_000_000;
      // mobile(1) is in three live sessions (one released, in grace), and one that has ended.
      createSession(t.db, { id: 's1', first: party(mobile(1)), second: party(mobile(2)), now });
      createSession(t.db, { id: 's2', first: party(mobile(1)), second: party(mobile(3)), now });
      createSession(t.db, { id: 's3', first: party(mobile(1)), second: party(mobile(4)), now, ttlMs: 60_000 });
      createSession(t.db, { id: 's4', first: party(mobile(1)), second: party(mobile(5)), now });
      releaseSession(t.db, 's3', 600_000, now + 1);
      releaseSession(t.db, 's4', 0, now + 1);
      createSession(t.db, { id: 's5', first: party(mobile(6)), second: party(mobile(7)), now, ttlMs: 1_000 });
      const at = now + 2_000; // s5's TTL has run out
      const f = storeFigures(t.db, at);
      const stats = collectStats(t.db, at);
      expect(f.pool).toEqual(stats.pool);
      expect(f.pool).toEqual({ available: 4, reserved: 1, retired: 1, total: 6 });
      expect(f.sessions).toEqual(stats.sessions);
      expect(f.sessions).toEqual({ active: 2, grace: 1, ended: 2 });
      expect(f.busiestPartyLive).toBe(stats.busiestParty.liveSessions);
      expect(f.busiestPartyLive).toBe(3);
      expect(f.headroom).toBe(4 - 3);
      // Recording off: no events, nothing waiting.
      expect(f.webhooks).toMatchObject({ recording: { on: false }, backlog: 0, oldestUndeliveredAt: null });
      expect(f.at).toBe(at);
    } finally {
      t.cleanup();
    }
  });
});

function figures(over: Partial<StoreFigures> = {}): StoreFigures {
  return {
    at: 1_000,
    tookMs: 12,
    pool: { available: 10, reserved: 2, retired: 1, total: 13 },
    sessions: { active: 5, grace: 1, ended: 9 },
    busiestPartyLive: 3,
    headroom: 7,
    webhooks: {
      recording: { on: true, since: 500 },
      events: { pending: 4, retrying: 1, queued: 2, blocked: 1, parked: 1 },
      backlog: 7,
      oldestUndeliveredAt: 1_500,
      counters: {
        delivered: 40,
        failed_attempts: 6,
        parked: 2,
        discarded: 1,
        refusals_dropped: 3,
        refused_no_session: 5,
        refused_invalid_caller: 0,
      },
    },
    ...over,
  };
}

describe('CachedFigures', () => {
  it('serves the latest read at once and reads again in the background only once it is older than maxAge, one read at a time', async () => {
    let clock = 1_000;
    let reads = 0;
    let release: (() => void) | undefined;
    const reader: FiguresReader = {
      read: () =>
        new Promise((resolve) => {
          reads++;
          const at = clock;
          release = () => resolve(figures({ at, headroom: reads }));
        }),
      close: async () => {},
    };
    const cached = new CachedFigures({ reader, maxAgeMs: 5_000, logger: silent, now: () => clock });
    expect(cached.latest()).toBeUndefined();
    expect(cached.latest()).toBeUndefined();
    expect(reads).toBe(1);
    release!();
    await until(() => cached.latest() !== undefined);
    expect(cached.latest()!.headroom).toBe(1);
    clock += 4_999;
    cached.latest();
    expect(reads).toBe(1);
    clock += 1;
    expect(cached.latest()!.headroom).toBe(1); // the stale value while the new read runs
    expect(reads).toBe(2);
    release!();
    await until(() => cached.latest()!.headroom === 2);
  });

  it('keeps the last figures and counts the failure when a read fails', async () => {
    let fail = false;
    const reader: FiguresReader = {
      read: () => (fail ? Promise.reject(new Error('disk gone')) : Promise.resolve(figures())),
      close: async () => {},
    };
    const cached = new CachedFigures({ reader, maxAgeMs: 1_000, logger: silent, now: () => 10_000 });
    await cached.refresh();
    fail = true;
    await cached.refresh();
    expect(cached.failures).toBe(1);
    expect(cached.latest()!.headroom).toBe(7);
  });
});

describe('RouterMetrics around a real FastAGI server', () => {
  let agi: FastAgiServer | undefined;
  afterEach(async () => {
    await agi?.close(0);
    agi = undefined;
  });

  it('counts answers by status, times every decision, reads the server counts, and never puts a number in a label', async () => {
    const metrics = new RouterMetrics();
    const A = '+447911000001';
    const route = metrics.timed((call: { callerId: string }) =>
      call.callerId === A
        ? { status: 'BRIDGE' as const, target: '+447911000002' as never, presentedCallerId: '+442079460001' as never, session: 'o1' }
        : { status: 'NO_SESSION' as const, target: null, presentedCallerId: null, session: null },
    );
    const handler = routeCalls(route, silent, (_call, answer) => metrics.answered(answer.status));
    agi = await startFastAgiServer({ host: '127.0.0.1', port: 0, maxConnections: 4, logger: silent, handler, fallback: FALLBACK_ANSWER });
    const reader: FiguresReader = { read: async () => figures({ at: 1_000 }), close: async () => {} };
    const cached = new CachedFigures({ reader, maxAgeMs: 60_000, logger: silent, now: () => 3_000 });
    await cached.refresh();
    const server = agi;
    metrics.attach({
      agi: { connections: () => server.connections(), counts: () => server.counts(), maxConnections: 4 },
      amiConnected: () => false,
      figures: cached,
      now: () => 3_000,
    });
    const port = agi.address().port;
    await placeCall(port, { agi_callerid: A, agi_extension: '+442079460009' });
    await placeCall(port, { agi_callerid: A, agi_extension: '+442079460009' });
    await placeCall(port, { agi_callerid: '+447911000077', agi_extension: '+442079460009' });
    await until(() => server.counts().ended.answered === 3);

    const { body } = await metrics.registry.exposition();
    const s = samples(body);
    expect(s.get('vnum_calls_routed_total{status="BRIDGE"}')).toBe(2);
    expect(s.get('vnum_calls_routed_total{status="NO_SESSION"}')).toBe(1);
    expect(s.get('vnum_calls_routed_total{status="ERROR"}')).toBe(0);
    expect(s.get('vnum_route_decision_seconds_count')).toBe(3);
    expect(s.get('vnum_route_decision_seconds_bucket{le="+Inf"}')).toBe(3);
    expect(s.get('vnum_route_decision_seconds_sum')).toBeGreaterThan(0);
    expect(s.get('vnum_agi_connections_ended_total{outcome="answered"}')).toBe(3);
    expect(s.get('vnum_agi_connections_open')).toBe(0);
    expect(s.get('vnum_agi_connections_max')).toBe(4);
    expect(s.get('vnum_ami_connected')).toBe(0);
    expect(s.get('vnum_sessions{state="active"}')).toBe(5);
    expect(s.get('vnum_pool_numbers{state="available"}')).toBe(10);
    expect(s.get('vnum_pool_headroom')).toBe(7);
    expect(s.get('vnum_party_live_sessions_max')).toBe(3);
    expect(s.get('vnum_store_figures_age_seconds')).toBe(2);
    expect(s.get('vnum_store_figures_read_seconds')).toBe(0.012);
    expect(s.get('vnum_webhook_backlog')).toBe(7);
    expect(s.get('vnum_webhook_events{state="parked"}')).toBe(1);
    expect(s.get('vnum_webhook_events{state="retrying"}')).toBe(1);
    expect(s.get('vnum_webhook_oldest_undelivered_age_seconds')).toBe(1.5);
    expect(s.get('vnum_webhook_recording')).toBe(1);
    expect(s.get('vnum_webhook_deliveries_total')).toBe(40);
    expect(s.get('vnum_webhook_failed_attempts_total')).toBe(6);
    expect(s.get('vnum_webhook_parked_total')).toBe(2);
    expect(s.get('vnum_webhook_refusals_not_sent_total{reason="flood"}')).toBe(3);
    expect(s.has('process_cpu_seconds_total')).toBe(true);
    // Labels name statuses, reasons, outcomes and states: never a number, a caller or a session.
    const labelValues = [...body.matchAll(/\{([^}]*)\}/g)].flatMap((m) => [...m[1]!.matchAll(/(\w+)="([^"]*)"/g)].filter((v) => v[1] !== 'le').map((v) => v[2]!));
    expect(labelValues.length).toBeGreaterThan(20);
    for (const value of labelValues) expect(value).not.toMatch(/\d{5}|o1/);
    expect(body).not.toMatch(/7911000001|7911000002|2079460009/);
  });

  it('counts refusals by reason: outside the allow-list, and at max-connections with every slot routing', async () => {
    let hold: (() => void) | undefined;
    const handler = () =>
      new Promise<{ variables: Array<[string, string]> }>((resolve) => {
        hold = () => resolve({ variables: [['VNUM_STATUS', 'NO_SESSION']] });
      });
    agi = await startFastAgiServer({ host: '127.0.0.1', port: 0, allow: ['127.0.0.1'], maxConnections: 1, logger: silent, handler, fallback: FALLBACK_ANSWER });
    const server = agi;
    const port = server.address().port;
    const first = placeCall(port, { agi_callerid: '+447911000001', agi_extension: '+442079460009' });
    await until(() => hold !== undefined);
    // The one slot is inside the handler: the next call is refused.
    await placeCall(port, { agi_callerid: '+447911000003', agi_extension: '+442079460009' }).catch(() => undefined);
    await until(() => server.counts().refused['max-connections'] === 1);
    hold!();
    await first;
    await until(() => server.counts().ended.answered === 1);
    expect(server.counts().refused['not-allowed']).toBe(0);

    // A server that allows only another address refuses loopback before reading a byte.
    const strict = await startFastAgiServer({ host: '127.0.0.1', port: 0, allow: ['192.0.2.1'], logger: silent, handler, fallback: FALLBACK_ANSWER });
    try {
      await placeCall(strict.address().port, { agi_callerid: '+447911000001', agi_extension: '+442079460009' }).catch(() => undefined);
      await until(() => strict.counts().refused['not-allowed'] === 1);
      expect(strict.counts().ended.answered).toBe(0);
    } finally {
      await strict.close(0);
    }
  });
});

describe('the freshness metrics of vnum serve on a cluster node', () => {
  const reader: FiguresReader = { read: async () => figures({ at: 1_000 }), close: async () => {} };
  const agiStub = { connections: () => 0, counts: () => ({ refused: {}, ended: {} }) as never, maxConnections: 1 };

  it('say fresh or stale, how old the view is, and whether every call is refused; absent on a single box', async () => {
    const metrics = new RouterMetrics();
    let freshness: Freshness = { replica: false, ageMs: null, stale: false, refusal: undefined };
    metrics.attach({ agi: agiStub, figures: new CachedFigures({ reader, maxAgeMs: 60_000, logger: silent }), freshness: () => freshness });
    const read = async () => samples((await metrics.registry.exposition()).body);
    const single = await read();
    for (const name of ['vnum_freshness_stale', 'vnum_freshness_failing_closed', 'vnum_freshness_age_seconds']) expect(single.has(name), name).toBe(false);

    freshness = { replica: true, ageMs: 400, stale: false, refusal: undefined };
    expect(Object.fromEntries([...(await read())].filter(([k]) => k.startsWith('vnum_freshness')))).toEqual({
      vnum_freshness_stale: 0,
      vnum_freshness_failing_closed: 0,
      vnum_freshness_age_seconds: 0.4,
    });
    // keep-routing past the bound: stale, still routing.
    freshness = { replica: true, ageMs: 12_500, stale: true, refusal: undefined };
    let s = await read();
    expect([s.get('vnum_freshness_stale'), s.get('vnum_freshness_failing_closed'), s.get('vnum_freshness_age_seconds')]).toEqual([1, 0, 12.5]);
    // fail-closed past the bound: refusing every call.
    freshness = { replica: true, ageMs: 12_500, stale: true, refusal: 'stale and fail-closed' };
    s = await read();
    expect([s.get('vnum_freshness_stale'), s.get('vnum_freshness_failing_closed')]).toEqual([1, 1]);
    // fail-closed on a file no replica ever reported into: refusing, never fresh (no age).
    freshness = { replica: false, ageMs: null, stale: true, refusal: 'no replica process' };
    s = await read();
    expect([s.get('vnum_freshness_stale'), s.get('vnum_freshness_failing_closed'), s.has('vnum_freshness_age_seconds')]).toEqual([1, 1, false]);
  });
});

describe('ReplicaMetrics (vnum replica --metrics-port)', () => {
  const status = (over: Partial<ReplicaStatus> = {}): ReplicaStatus => ({
    node: 'pbx_a',
    slot: 'vnum_pbx_a',
    phase: 'streaming',
    appliedLsn: '0/16B3748',
    appliedCommitAt: 9_000,
    builtAt: 1_000,
    serverWalEnd: '0/16B3800',
    lagBytes: 184,
    lastContactAt: 9_700,
    caughtUpAt: 9_250,
    lagMs: 750,
    stale: false,
    lastError: null,
    lastErrorAt: null,
    transactions: 42,
    changes: 126,
    skipped: 3,
    connects: 2,
    rebuilds: 1,
    ...over,
  });
  const view = (over: Partial<NodeView> & { node: string }): NodeView => ({
    slot: `vnum_${over.node}`,
    state: 'ok',
    lagMs: 120,
    behindBytes: 0,
    slotBytes: 56,
    walStatus: 'reserved',
    safeWalBytes: 1_048_576,
    active: true,
    clientAddress: '10.0.1.10',
    lastContactAgoMs: 200,
    reportedAgoMs: 1_000,
    phase: 'streaming',
    host: 'pbx-a',
    version: '0.0.0',
    lastError: null,
    callLogBacklog: null,
    callLogShippedAgoMs: null,
    ...over,
  });

  it("exports this node's lag, contact, phase and counts, and every node's slot and report as the authority sees them", async () => {
    const metrics = new ReplicaMetrics();
    const before = samples((await metrics.registry.exposition()).body);
    expect([...before.keys()].filter((k) => k.startsWith('vnum_'))).toEqual([]);
    metrics.attach({
      status: () => status(),
      cluster: () => ({
        at: 8_000,
        nodes: [
          view({ node: 'pbx_a' }),
          // A dead node: no consumer, its slot keeps 3 GB and is past max_slot_wal_keep_size.
          view({ node: 'pbx_b', state: 'inactive', active: false, slotBytes: 3e9, behindBytes: 3e9, walStatus: 'unreserved', safeWalBytes: -5_000, lastContactAgoMs: 600_000, lagMs: 90 }),
          // A node that reports but whose slot was dropped.
          view({ node: 'pbx_c', slot: null, state: 'no-slot', active: false, slotBytes: null, behindBytes: null, walStatus: null, safeWalBytes: null }),
        ],
      }),
      reportFailures: () => 4,
      viewMaxAgeMs: 10_000,
      now: () => 10_000,
    });
    const s = samples((await metrics.registry.exposition()).body);
    expect(s.get('vnum_replica_lag_seconds')).toBe(0.75);
    expect(s.get('vnum_replica_behind_bytes')).toBe(184);
    expect(s.get('vnum_replica_last_contact_age_seconds')).toBe(0.3);
    expect(s.get('vnum_replica_phase{phase="streaming"}')).toBe(1);
    expect(s.get('vnum_replica_phase{phase="copying"}')).toBe(0);
    expect(s.get('vnum_replica_transactions_applied_total')).toBe(42);
    expect(s.get('vnum_replica_changes_applied_total')).toBe(126);
    expect(s.get('vnum_replica_transactions_skipped_total')).toBe(3);
    expect(s.get('vnum_replica_connects_total')).toBe(2);
    expect(s.get('vnum_replica_rebuilds_total')).toBe(1);
    expect(s.get('vnum_replica_report_failures_total')).toBe(4);
    expect(s.get('vnum_cluster_view_age_seconds')).toBe(2);

    expect(s.get('vnum_cluster_slot_retained_wal_bytes{node="pbx_a",slot="vnum_pbx_a"}')).toBe(56);
    expect(s.get('vnum_cluster_slot_retained_wal_bytes{node="pbx_b",slot="vnum_pbx_b"}')).toBe(3e9);
    expect(s.get('vnum_cluster_slot_behind_bytes{node="pbx_b",slot="vnum_pbx_b"}')).toBe(3e9);
    expect(s.get('vnum_cluster_slot_active{node="pbx_a",slot="vnum_pbx_a"}')).toBe(1);
    expect(s.get('vnum_cluster_slot_active{node="pbx_b",slot="vnum_pbx_b"}')).toBe(0);
    expect(s.get('vnum_cluster_slot_safe_wal_bytes{node="pbx_b",slot="vnum_pbx_b"}')).toBe(-5_000);
    expect(s.get('vnum_cluster_slot_wal_status{node="pbx_b",slot="vnum_pbx_b",wal_status="unreserved"}')).toBe(1);
    expect(s.get('vnum_cluster_slot_wal_status{node="pbx_b",slot="vnum_pbx_b",wal_status="reserved"}')).toBe(0);
    expect(s.get('vnum_cluster_slot_wal_status{node="pbx_a",slot="vnum_pbx_a",wal_status="reserved"}')).toBe(1);
    // No slot, no slot series; its report still shows.
    expect([...s.keys()].filter((k) => k.startsWith('vnum_cluster_slot') && k.includes('pbx_c'))).toEqual([]);
    expect(s.get('vnum_cluster_node_state{node="pbx_c",state="no-slot"}')).toBe(1);
    expect(s.get('vnum_cluster_node_state{node="pbx_b",state="inactive"}')).toBe(1);
    expect(s.get('vnum_cluster_node_state{node="pbx_b",state="ok"}')).toBe(0);
    // Its age at the read (600 s) and the view's since (2 s).
    expect(s.get('vnum_cluster_node_last_contact_age_seconds{node="pbx_b"}')).toBe(602);
    expect(s.get('vnum_cluster_node_lag_seconds{node="pbx_a"}')).toBe(0.12);
    expect(s.has('process_cpu_seconds_total')).toBe(true);
  });

  it('leaves out what is not known yet: no contact, never caught up, no cluster view, an unlimited slot', async () => {
    const metrics = new ReplicaMetrics();
    metrics.attach({
      status: () => status({ phase: 'connecting', lastContactAt: null, caughtUpAt: null, lagMs: null, lagBytes: null }),
      cluster: () => ({ at: 10_000, nodes: [view({ node: 'pbx_a', safeWalBytes: null })] }),
      reportFailures: () => 0,
      viewMaxAgeMs: 10_000,
      now: () => 10_000,
    });
    const s = samples((await metrics.registry.exposition()).body);
    for (const name of ['vnum_replica_lag_seconds', 'vnum_replica_behind_bytes', 'vnum_replica_last_contact_age_seconds']) expect(s.has(name), name).toBe(false);
    expect(s.get('vnum_replica_phase{phase="connecting"}')).toBe(1);
    expect([...s.keys()].some((k) => k.startsWith('vnum_cluster_slot_safe_wal_bytes'))).toBe(false);
    expect(s.get('vnum_cluster_slot_active{node="pbx_a",slot="vnum_pbx_a"}')).toBe(1);
  });

  it("leaves the cluster series out once its view is older than the bound (a node cut off from the authority), and says how old it is", async () => {
    const metrics = new ReplicaMetrics();
    let t = 10_000;
    metrics.attach({
      status: () => status(),
      cluster: () => ({ at: 10_000, nodes: [view({ node: 'pbx_a' }), view({ node: 'pbx_b' })] }),
      reportFailures: () => 0,
      viewMaxAgeMs: 10_000,
      now: () => t,
    });
    const clusterSeries = async () => [...samples((await metrics.registry.exposition()).body).keys()].filter((k) => k.startsWith('vnum_cluster_') && !k.startsWith('vnum_cluster_view'));
    expect((await clusterSeries()).length).toBeGreaterThan(10);
    t = 20_000;
    expect((await clusterSeries()).length).toBeGreaterThan(10);
    t = 20_001;
    expect(await clusterSeries()).toEqual([]);
    expect(samples((await metrics.registry.exposition()).body).get('vnum_cluster_view_age_seconds')).toBe(10.001);
  });
});
