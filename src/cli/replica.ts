import { createRequire } from 'node:module';
import type { Command } from 'commander';
import { createLogger } from '../log.js';
import type { ReplicaEvent } from '../replica/consumer.js';
import { HealthWriter } from '../replica/health.js';
import { REPLICA_DEFAULTS, slotForNode } from '../replica/names.js';
import type { PgTarget } from '../replica/stream.js';
import { ErrorCode, VnumError } from '../errors.js';
import { openDb, resolveDbPath } from '../store/db.js';
import { ReplicaMetrics } from '../metrics/replica.js';
import { startMetricsServer, type MetricsServer } from '../metrics/server.js';
import { NODE_STALE_AFTER_MS } from '../replica/cluster.js';
import { addAuthoritySetting, authorityName, requireAuthority } from './authority.js';
import { globalOptions } from './context.js';
import { listenError } from './failure.js';
import { addSetting, boundedDuration, configurationError, formatMs, hostSetting, portOrOff, span } from './settings.js';

const { version } = createRequire(import.meta.url)('../../../package.json') as { version: string };

/** Bounds of `vnum replica`'s settings. */
export const REPLICA_LIMITS = Object.freeze({
  pingMs: Object.freeze({ min: 100, max: 10_000 }),
  linkTimeoutMs: Object.freeze({ min: 1_000, max: 120_000 }),
  connectTimeoutMs: Object.freeze({ min: 500, max: 60_000 }),
  commandTimeoutMs: Object.freeze({ min: 1_000, max: 600_000 }),
  retryMaxMs: Object.freeze({ min: 250, max: 300_000 }),
  reportEveryMs: Object.freeze({ min: 1_000, max: 300_000 }),
});

export const REPORT_EVERY_MS = 2_000;

interface ReplicaOptions {
  node?: string;
  authority?: PgTarget;
  ping: number;
  linkTimeout: number;
  connectTimeout: number;
  commandTimeout: number;
  retryMax: number;
  reportEvery: number;
  metricsPort: number | null;
  metricsHost: string;
}

export interface ReplicaSettings {
  node: string;
  target: PgTarget;
  pingIntervalMs: number;
  staleAfterMs: number;
  connectTimeoutMs: number;
  commandTimeoutMs: number;
  retryMaxMs: number;
  reportEveryMs: number;
  /** The Prometheus endpoint; null: off. */
  metrics: { host: string; port: number } | null;
}

/** A node's name: it names the node's slot. */
function nodeSetting(name: string, text: string): string {
  try {
    slotForNode(text);
  } catch {
    throw configurationError(name, text.slice(0, 70), '1-58 characters of a-z 0-9 _ (it names the slot vnum_<name>)');
  }
  return text;
}

/** What commander judged one by one, judged together: the required ones, and the link timeout against the ping. */
function replicaSettings(options: ReplicaOptions): ReplicaSettings {
  if (options.node === undefined) {
    throw new VnumError(ErrorCode.Configuration, "--node is missing: this node's name (its slot on the authority is vnum_<name>); or set VNUM_NODE");
  }
  // The node judges silence on its ping ticks and skips a late one: a bound under two pings could never be judged.
  if (options.linkTimeout < 2 * options.ping) {
    throw configurationError('--link-timeout', formatMs(options.linkTimeout), `at least twice --ping (${formatMs(2 * options.ping)})`);
  }
  return {
    node: options.node,
    target: requireAuthority(options.authority),
    pingIntervalMs: options.ping,
    staleAfterMs: options.linkTimeout,
    connectTimeoutMs: options.connectTimeout,
    commandTimeoutMs: options.commandTimeout,
    retryMaxMs: options.retryMax,
    reportEveryMs: options.reportEvery,
    metrics: options.metricsPort === null ? null : { host: options.metricsHost, port: options.metricsPort },
  };
}

function durationSetting(command: Command, flags: string, description: string, limits: { min: number; max: number }, defaultMs: number): void {
  addSetting(command, {
    flags,
    description: `${description}, ${span(limits)}`,
    judge: boundedDuration(limits),
    default: { value: defaultMs, shown: formatMs(defaultMs) },
  });
}

/** One log line per replica event: positions, counts and reasons, never a row's values. */
function logEvent(logger: ReturnType<typeof createLogger>, event: ReplicaEvent): void {
  switch (event.type) {
    case 'connected':
      logger.info({ systemId: event.systemId, from: event.from }, 'following the slot');
      break;
    case 'rebuilding':
      logger.warn({ reason: event.reason }, 'rebuilding the replica from a snapshot');
      break;
    case 'rebuilt':
      logger.info({ lsn: event.lsn, rows: event.rows, ms: event.ms }, 'replica rebuilt');
      break;
    case 'stale':
      logger.warn({ silentMs: event.silentMs }, 'nothing heard from the authority: reconnecting');
      break;
    case 'disconnected':
      logger.warn({ error: event.error, sqlState: event.code ?? null, retryInMs: event.retryInMs }, 'disconnected from the authority');
      break;
  }
}

export function registerReplica(program: Command): void {
  const replica = program
    .command('replica')
    .description("cluster mode: keep this node's SQLite file (--db) equal to the authority, through its own logical replication slot");
  addSetting<string | undefined>(replica, {
    flags: '--node <name>',
    description: "this node's name, 1-58 of a-z 0-9 _ (its slot: vnum_<name>)",
    judge: nodeSetting,
    default: { value: undefined },
    env: 'VNUM_NODE',
  });
  addAuthoritySetting(replica);
  durationSetting(replica, '--ping <duration>', 'how often to ask the authority for a keepalive (and write the health row)', REPLICA_LIMITS.pingMs, REPLICA_DEFAULTS.pingIntervalMs);
  durationSetting(
    replica,
    '--link-timeout <duration>',
    "silence after which the link is dropped and made again (at least twice --ping; set the authority's wal_sender_timeout a little above it)",
    REPLICA_LIMITS.linkTimeoutMs,
    REPLICA_DEFAULTS.staleAfterMs,
  );
  durationSetting(replica, '--connect-timeout <duration>', 'to connect', REPLICA_LIMITS.connectTimeoutMs, REPLICA_DEFAULTS.connectTimeoutMs);
  durationSetting(replica, '--command-timeout <duration>', 'longest replication command or snapshot-copy query', REPLICA_LIMITS.commandTimeoutMs, REPLICA_DEFAULTS.commandTimeoutMs);
  durationSetting(replica, '--retry-max <duration>', 'longest wait between reconnects', REPLICA_LIMITS.retryMaxMs, REPLICA_DEFAULTS.retryMaxMs);
  durationSetting(replica, '--report-every <duration>', "how often to report to the authority's node_report", REPLICA_LIMITS.reportEveryMs, REPORT_EVERY_MS);
  addSetting(replica, {
    flags: '--metrics-port <port>',
    description: "serve Prometheus metrics at http://<metrics-host>:<port>/metrics (this node's lag, and every node's slot as the authority sees it), or off",
    judge: portOrOff,
    default: { value: null, shown: 'off' },
    env: 'VNUM_REPLICA_METRICS_PORT',
  });
  addSetting(replica, {
    flags: '--metrics-host <address>',
    description: 'address the metrics endpoint listens on (keep it on loopback or a monitoring network)',
    judge: hostSetting,
    default: { value: '127.0.0.1' },
    env: 'VNUM_REPLICA_METRICS_HOST',
  });
  replica
    .action(async (options: ReplicaOptions, command: Command) => {
      const logger = createLogger();
      const settings = replicaSettings(options);
      // The replication code (pg, pg-logical-replication) loads only for this command.
      const [{ startReplica }, { startAuthorityReports }] = await Promise.all([import('../replica/consumer.js'), import('../replica/report.js')]);
      const dbPath = resolveDbPath(globalOptions(command).db);
      // The metrics endpoint binds first: a taken port stops the start before the file is opened or the slot touched.
      let metricsServer: MetricsServer | undefined;
      const metrics = settings.metrics ? new ReplicaMetrics() : undefined;
      if (metrics && settings.metrics) {
        try {
          metricsServer = await startMetricsServer({ host: settings.metrics.host, port: settings.metrics.port, registry: metrics.registry, logger });
        } catch (e) {
          throw listenError(e, `${settings.metrics.host}:${settings.metrics.port}`);
        }
      }
      let db: ReturnType<typeof openDb>;
      try {
        db = openDb(dbPath, { mode: 'create' });
      } catch (e) {
        await metricsServer?.close();
        throw e;
      }
      const health = new HealthWriter(db);
      const replica = startReplica({
        db,
        target: settings.target,
        node: settings.node,
        pingIntervalMs: settings.pingIntervalMs,
        staleAfterMs: settings.staleAfterMs,
        connectTimeoutMs: settings.connectTimeoutMs,
        commandTimeoutMs: settings.commandTimeoutMs,
        retryMaxMs: settings.retryMaxMs,
        onEvent: (event) => logEvent(logger, event),
      });
      const writeHealth = (): void => {
        try {
          health.write(replica.status());
        } catch (error) {
          // A busy file (vnum serve writing its call log) costs one report; the next tick writes again.
          logger.warn({ err: error }, 'could not write the replica health row');
        }
      };
      writeHealth();
      const healthTimer = setInterval(writeHealth, settings.pingIntervalMs);
      // How old a node's report may be before it is stale, and how old this node's view of the cluster may be before /metrics leaves it out.
      const viewBoundMs = Math.max(NODE_STALE_AFTER_MS, 3 * settings.reportEveryMs);
      const reports = startAuthorityReports({
        target: settings.target,
        status: () => replica.status(),
        version,
        everyMs: settings.reportEveryMs,
        connectTimeoutMs: settings.connectTimeoutMs,
        onError: (message) => logger.warn({ error: message }, 'cannot report to the authority (retrying)'),
        // The cluster's slots for /metrics, read on the report's connection; nothing more without metrics.
        clusterView: metrics ? { staleAfterMs: viewBoundMs } : undefined,
      });
      metrics?.attach({ status: () => replica.status(), cluster: () => reports.clusterView(), reportFailures: () => reports.failures, viewMaxAgeMs: viewBoundMs });
      logger.info(
        {
          node: settings.node,
          slot: replica.status().slot,
          authority: authorityName(settings.target),
          db: dbPath,
          metrics: metricsServer ? `${metricsServer.address().host}:${metricsServer.address().port}` : 'off',
        },
        'vnum replica following the authority into this file',
      );
      await new Promise<void>((resolve) => {
        const stop = (signal: NodeJS.Signals): void => {
          process.off('SIGTERM', stop);
          process.off('SIGINT', stop);
          logger.info({ signal }, 'stopping');
          clearInterval(healthTimer);
          replica
            .stop()
            .then(() => writeHealth())
            .then(() => reports.stop())
            .then(() => metricsServer?.close())
            .catch((error: unknown) => logger.error({ err: error }, 'error while stopping'))
            .finally(() => {
              db.close();
              logger.info('vnum replica stopped');
              resolve();
            });
        };
        process.on('SIGTERM', stop);
        process.on('SIGINT', stop);
      });
    });
}
