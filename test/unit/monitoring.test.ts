import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { HttpMetrics } from '../../src/metrics/http.js';
import { ReplicaMetrics } from '../../src/metrics/replica.js';
import { RouterMetrics } from '../../src/metrics/router.js';
import { installPrometheus, prometheusBlocker } from '../support/prometheus/prometheus.js';
import { repoPath } from '../support/repo.js';
import { describeWhen } from '../support/suite.js';

/**
 * What deploy/prometheus and deploy/grafana ship: alert rules promtool
 * accepts and whose own unit tests pass, and rules and dashboard that only
 * name metrics the product exports.
 */

const RULES = repoPath('deploy/prometheus/vnum-alerts.yml');
const RULES_TEST = repoPath('deploy/prometheus/vnum-alerts.test.yml');
const CONFIG = repoPath('deploy/prometheus/prometheus.yml');
const DASHBOARD = repoPath('deploy/grafana/vnum-dashboard.json');

/** Every metric name a scrape of each process shows (its # TYPE lines), series suffixes included. */
async function exportedNames(): Promise<Set<string>> {
  const names = new Set<string>(['up']);
  // vnum serve's, vnum api's (HttpMetrics, wired by vnum api --metrics-port) and vnum replica's.
  const bodies = [
    (await new RouterMetrics().registry.exposition()).body,
    (await new HttpMetrics('vnum_api', 'HTTP API').registry.exposition()).body,
    (await new ReplicaMetrics().registry.exposition()).body,
  ];
  for (const [, name, type] of bodies.join('\n').matchAll(/^# TYPE (\S+) (\S+)$/gm)) {
    names.add(name!);
    if (type === 'histogram' || type === 'summary') for (const suffix of ['_bucket', '_sum', '_count']) names.add(`${name}${suffix}`);
  }
  return names;
}

const PROMQL_WORDS = new Set([
  'sum', 'rate', 'irate', 'increase', 'histogram_quantile', 'by', 'without', 'on', 'ignoring', 'group_left', 'group_right', 'and', 'or',
  'unless', 'absent', 'max', 'min', 'avg', 'count', 'clamp_min', 'deriv', 'delta', 'le', 'offset', 'bool', 'topk', 'vector', 'time',
]);

/** The metric names an expression reads: identifiers outside label matchers, strings and ranges that are not PromQL's own words. */
function metricsIn(expr: string): string[] {
  const bare = expr
    .replace(/\{[^}]*\}/g, '')
    .replace(/"[^"]*"/g, '')
    .replace(/\[[^\]]*\]/g, '')
    .replace(/\$\w+/g, '')
    .replace(/\b(?:by|without|on|ignoring)\s*\([^)]*\)/g, '');
  return [...bare.matchAll(/[a-zA-Z_:][a-zA-Z0-9_:]*/g)].map((m) => m[0]).filter((w) => !PROMQL_WORDS.has(w) && !/^\d/.test(w));
}

interface RuleFile {
  groups: Array<{ name: string; rules: Array<{ alert?: string; expr: string; labels?: Record<string, string> }> }>;
}

describe('alert rules and dashboard name only metrics the product exports', () => {
  let names: Set<string>;
  beforeAll(async () => {
    names = await exportedNames();
  });

  it('the names the check reads are real: a histogram series and a process metric are there, an invented name is not', () => {
    expect(names.has('vnum_route_decision_seconds_bucket')).toBe(true);
    expect(names.has('process_cpu_seconds_total')).toBe(true);
    expect(metricsIn('sum by (le) (rate(vnum_route_decision_seconds_bucket{job=~"$job"}[5m]))')).toEqual(['vnum_route_decision_seconds_bucket']);
    expect(metricsIn('vnum_pool_headroom < on (job, instance) (0.1 * vnum_pool_numbers{state="available"}) or vnum_nope < 5')).toEqual([
      'vnum_pool_headroom',
      'vnum_pool_numbers',
      'vnum_nope',
    ]);
  });

  it('every alert rule reads exported metrics and has a severity, a summary and a description', () => {
    const file = parse(readFileSync(RULES, 'utf8')) as RuleFile;
    const alerts = file.groups.flatMap((g) => g.rules);
    expect(alerts.map((r) => r.alert)).toEqual(
      expect.arrayContaining(['VnumRouterDown', 'VnumAmiDown', 'VnumPoolHeadroomLow', 'VnumPoolExhausted', 'VnumWebhookBacklogGrowing', 'VnumApiDown']),
    );
    // Issue 15's: a lagging replica, a node not heard from, a slot without a consumer, a slot about to be or already lost.
    expect(alerts.map((r) => r.alert)).toEqual(
      expect.arrayContaining(['VnumReplicaLagging', 'VnumNodeNotHeardFrom', 'VnumSlotInactive', 'VnumSlotUnreserved', 'VnumSlotLost', 'VnumNodeFailingClosed']),
    );
    for (const rule of alerts) {
      const used = metricsIn(rule.expr);
      expect(used.length, rule.alert).toBeGreaterThan(0);
      for (const name of used) expect(names.has(name), `${rule.alert} reads ${name}`).toBe(true);
      expect(['critical', 'warning']).toContain(rule.labels?.severity);
    }
  });

  it('the Grafana dashboard is JSON whose every panel query reads exported metrics', () => {
    const dashboard = JSON.parse(readFileSync(DASHBOARD, 'utf8')) as {
      title: string;
      panels: Array<{ title: string; targets: Array<{ expr: string }> }>;
    };
    expect(dashboard.title).toBe('vnum');
    expect(dashboard.panels.length).toBeGreaterThanOrEqual(10);
    const read = new Set<string>();
    for (const panel of dashboard.panels) {
      expect(panel.targets.length, panel.title).toBeGreaterThan(0);
      for (const target of panel.targets) {
        const used = metricsIn(target.expr);
        expect(used.length, `${panel.title}: ${target.expr}`).toBeGreaterThan(0);
        for (const name of used) {
          expect(names.has(name), `${panel.title} reads ${name}`).toBe(true);
          read.add(name);
        }
      }
    }
    // Each metric the issue names has a panel.
    for (const name of [
      'vnum_calls_routed_total',
      'vnum_route_decision_seconds_bucket',
      'vnum_agi_connections_open',
      'vnum_agi_connections_refused_total',
      'vnum_sessions',
      'vnum_pool_numbers',
      'vnum_pool_headroom',
      'vnum_ami_connected',
      'vnum_webhook_backlog',
      'vnum_webhook_events',
      'vnum_webhook_failed_attempts_total',
      'vnum_api_requests_total',
      'vnum_replica_lag_seconds',
      'vnum_cluster_slot_retained_wal_bytes',
      'vnum_cluster_slot_active',
      'vnum_cluster_slot_wal_status',
      'vnum_freshness_failing_closed',
    ]) {
      expect(read.has(name), name).toBe(true);
    }
  });
});

describeWhen(prometheusBlocker(), 'promtool (Debian prometheus)', () => {
  beforeAll(() => installPrometheus(), 15 * 60_000);

  const promtool = (...args: string[]) => spawnSync('promtool', args, { encoding: 'utf8', cwd: repoPath('deploy/prometheus') });

  it('check rules and check config accept what deploy/prometheus ships', () => {
    const rules = promtool('check', 'rules', RULES);
    expect(rules.status, rules.stdout + rules.stderr).toBe(0);
    expect(rules.stdout).toMatch(/SUCCESS: \d+ rules found/);
    const config = promtool('check', 'config', CONFIG);
    expect(config.status, config.stdout + config.stderr).toBe(0);
  });

  it("the rules' own unit tests pass: each alert fires on its series, after its `for`, and not before", () => {
    const run = promtool('test', 'rules', RULES_TEST);
    expect(run.status, run.stdout + run.stderr).toBe(0);
    expect(run.stdout).toContain('SUCCESS');
  });

  it('check rules fails a broken expression, and the unit tests fail a weakened rule: these checks can fail', () => {
    const dir = mkdtempSync(join(tmpdir(), 'vnum-rules-'));
    try {
      const text = readFileSync(RULES, 'utf8');
      writeFileSync(join(dir, 'broken.yml'), text.replace('expr: vnum_ami_connected == 0', 'expr: vnum_ami_connected == (0'));
      const broken = promtool('check', 'rules', join(dir, 'broken.yml'));
      expect(broken.status).not.toBe(0);
      expect(broken.stdout + broken.stderr).toMatch(/parse error/);
      // A pool alert that waits an hour no longer fires when its test expects it.
      writeFileSync(join(dir, 'vnum-alerts.yml'), text.replace(/(alert: VnumPoolExhausted\n\s+expr: .*\n\s+for: )1m/, '$11h'));
      copyFileSync(RULES_TEST, join(dir, 'vnum-alerts.test.yml'));
      const weakened = spawnSync('promtool', ['test', 'rules', 'vnum-alerts.test.yml'], { encoding: 'utf8', cwd: dir });
      expect(weakened.status).not.toBe(0);
      expect(weakened.stdout + weakened.stderr).toMatch(/VnumPoolExhausted/);
      // A slot rule that asks whether any slot has a consumer, not whether this one has, no longer fires for the dead node's.
      writeFileSync(
        join(dir, 'vnum-alerts.yml'),
        text.replace('(max by (node, slot) (vnum_cluster_slot_active) == 0)', '(max(vnum_cluster_slot_active) == 0)'),
      );
      expect(readFileSync(join(dir, 'vnum-alerts.yml'), 'utf8')).not.toBe(text);
      const blind = spawnSync('promtool', ['test', 'rules', 'vnum-alerts.test.yml'], { encoding: 'utf8', cwd: dir });
      expect(blind.status).not.toBe(0);
      expect(blind.stdout + blind.stderr).toMatch(/VnumSlotInactive/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
