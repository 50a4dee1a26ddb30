import { closeSync, constants, fstatSync, openSync, readFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import { isIP } from 'node:net';
import { createSecureContext } from 'node:tls';
import type { Command } from 'commander';
import { AllowList } from '../../agi/allow-list.js';
import { buildApi } from '../api/app.js';
import type { Authority } from '../authority/authority.js';
import { openSqliteAuthority } from '../authority/sqlite.js';
import type { PgTarget } from '../replica/stream.js';
import { addAuthoritySetting, authorityName } from './authority.js';
import { ErrorCode, VnumError } from '../errors.js';
import { createLogger } from '../log.js';
import type { NumberPolicy } from '../numbers/policy.js';
import { resolveDbPath } from '../store/db.js';
import { ALLOWED_NUMBER_TYPES_OPTION, defaultCountry, globalOptions, numberPolicy, refuseReplicaFile } from './context.js';
import { pinGuessBoundOption } from './options.js';
import { printLine } from './output.js';
import { secretFileModeProblem } from './secret-file.js';
import { addSetting, boundedDuration, boundedInteger, configurationError, hostSetting, portOrOff, SETTING_LIMITS, span, tcpPort } from './settings.js';
import { HttpMetrics } from '../metrics/http.js';
import { startMetricsServer, type MetricsServer } from '../metrics/server.js';

export const API_DEFAULTS = Object.freeze({ host: '127.0.0.1', port: 8474, rateLimit: 1000, drain: '5s' });
const RATE_LIMIT_BOUNDS = { min: 0, max: 1_000_000 };
/** A PEM file is a few KiB; anything far bigger is the wrong file. */
const MAX_PEM_BYTES = 1024 * 1024;

interface ApiFlags {
  host: string;
  port: number;
  tlsCert?: PemFile;
  tlsKey?: PemFile;
  rateLimit: number;
  trustProxy?: string[];
  drain: number;
  metricsPort: number | null;
  metricsHost: string;
  pinGuessBound: number;
  probe?: boolean;
  authority?: PgTarget;
}

export interface ApiSettings {
  host: string;
  port: number;
  tls: { cert: Buffer; key: Buffer } | undefined;
  rateLimit: number;
  trustProxy: string[] | undefined;
  drainMs: number;
  defaultCountry: string | undefined;
  policy: NumberPolicy;
  /** VNUM_PIN_GUESS_BOUND, as `vnum session create` takes it: sizes the PINs the API's creates issue. */
  pinGuessBound: number;
  /** The Prometheus endpoint, on a port of its own; null: off. */
  metrics: { host: string; port: number } | null;
  /** Cluster mode: the authority (PostgreSQL) the API runs on; undefined: the SQLite file (--db). */
  authority: PgTarget | undefined;
}

interface PemFile {
  file: string;
  pem: Buffer;
}

/** A PEM file, read with the same care as the AMI secret: a regular file, and the key owner-only. */
const readPem = (secret: boolean) => (name: string, file: string): PemFile => {
  let fd: number;
  try {
    fd = openSync(file, constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOCTTY);
  } catch (e) {
    throw configurationError(name, file, `cannot read it: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  try {
    const stat = fstatSync(fd);
    if (!stat.isFile()) throw configurationError(name, file, 'not a regular file');
    if (stat.size > MAX_PEM_BYTES) throw configurationError(name, file, `${stat.size} bytes: not a PEM file`);
    const problem = secret ? secretFileModeProblem(stat.mode, stat.uid) : null;
    if (problem) throw configurationError(name, file, `the private key is not owner-only: ${problem}`);
    return { file, pem: readFileSync(fd) };
  } finally {
    closeSync(fd);
  }
};

/** Both files or neither, and a key that is the certificate's. */
function tlsSetting(cert: PemFile | undefined, key: PemFile | undefined): ApiSettings['tls'] {
  if (cert === undefined && key === undefined) return undefined;
  if (cert === undefined || key === undefined) {
    throw new VnumError(ErrorCode.Configuration, `TLS needs both a certificate and its key: ${cert === undefined ? '--tls-cert' : '--tls-key'} is missing`);
  }
  const tls = { cert: cert.pem, key: key.pem };
  try {
    createSecureContext(tls);
  } catch (e) {
    throw new VnumError(ErrorCode.Configuration, `invalid TLS certificate ${cert.file} or key ${key.file}: ${(e as Error).message}`);
  }
  return tls;
}

/** Reverse proxies whose X-Forwarded-For is believed: addresses or CIDR ranges, never every address. */
function trustProxySetting(name: string, text: string): string[] | undefined {
  if (text.trim() === '') return undefined;
  const entries = text.split(',').map((entry) => entry.trim());
  try {
    new AllowList(entries);
  } catch (e) {
    throw configurationError(name, text, (e as Error).message.replace(/allow-list/g, 'proxy list'));
  }
  return entries;
}

/** Every setting of `vnum api`, judged as commander reads it, before anything is opened (as `vnum serve`'s: ./settings.ts). */
export function apiSettings(options: ApiFlags, command: Command): ApiSettings {
  return {
    host: options.host,
    port: options.port,
    tls: tlsSetting(options.tlsCert, options.tlsKey),
    rateLimit: options.rateLimit,
    trustProxy: options.trustProxy,
    drainMs: options.drain,
    metrics: options.metricsPort === null ? null : { host: options.metricsHost, port: options.metricsPort },
    defaultCountry: defaultCountry(command),
    policy: numberPolicy(command),
    pinGuessBound: options.pinGuessBound,
    authority: options.authority,
  };
}

/**
 * The store the API runs on: the SQLite file (--db, made and migrated if
 * new), or with --authority PostgreSQL (cluster mode; its schema made by
 * vnum cluster migrate). pg is loaded only then.
 */
export async function openApiAuthority(settings: Pick<ApiSettings, 'authority'>, command: Command): Promise<{ authority: Authority; where: string }> {
  if (settings.authority === undefined) {
    const dbPath = resolveDbPath(globalOptions(command).db);
    // A cluster node's replica file is the authority's copy: the API writes on the authority itself.
    refuseReplicaFile(command, dbPath);
    return { authority: openSqliteAuthority(dbPath, { mode: 'create' }), where: dbPath };
  }
  const { openPostgresAuthority } = await import('../authority/postgres.js');
  return { authority: await openPostgresAuthority(settings.authority, { applicationName: 'vnum api' }), where: `postgres://${authorityName(settings.authority)}` };
}

const isLoopback = (host: string): boolean => host === 'localhost' || host === '::1' || /^127\./.test(host);

/** Where a probe on this host reaches an API listening on `host`. */
function probeHost(host: string): string {
  if (host === '0.0.0.0') return '127.0.0.1';
  if (host === '::') return '::1';
  return host;
}

/**
 * `vnum api --probe`: GET /v1/ready on the API these settings describe.
 * Over TLS the certificate is not verified: the probe asks a process on this
 * host whether it answers, and a certificate names the public host, not
 * 127.0.0.1.
 */
function probe(settings: ApiSettings): Promise<{ ok: boolean; text: string }> {
  const host = probeHost(settings.host);
  const request = settings.tls ? https.request : http.request;
  return new Promise((resolve) => {
    const req = request(
      { host, port: settings.port, path: '/v1/ready', method: 'GET', timeout: 2_000, ...(settings.tls ? { rejectUnauthorized: false } : {}) },
      (res) => {
        let body = '';
        res.setEncoding('utf8').on('data', (chunk: string) => (body = (body + chunk).slice(0, 2_000)));
        res.on('end', () => resolve({ ok: res.statusCode === 200, text: `${res.statusCode} ${body.replace(/\s+/g, ' ').trim()}` }));
      },
    );
    req.on('timeout', () => req.destroy(new Error('no answer within 2 s')));
    req.on('error', (e) => resolve({ ok: false, text: e.message }));
    req.end();
  });
}

export function registerApi(program: Command): void {
  const api = program
    .command('api')
    .description('run the HTTP API (sessions, pool, route, calls, stats, health) on the same database as vnum serve, or with --authority on PostgreSQL (cluster mode)');
  addAuthoritySetting(api);
  addSetting(api, { flags: '--host <address>', description: 'address to listen on', judge: hostSetting, default: { value: API_DEFAULTS.host }, env: 'VNUM_API_HOST' });
  addSetting(api, { flags: '--port <port>', description: 'TCP port', judge: tcpPort, default: { value: API_DEFAULTS.port }, env: 'VNUM_API_PORT' });
  addSetting(api, {
    flags: '--tls-cert <file>',
    description: 'serve HTTPS with this PEM certificate (chain)',
    judge: readPem(false),
    default: { value: undefined },
    env: 'VNUM_API_TLS_CERT',
  });
  addSetting(api, { flags: '--tls-key <file>', description: "the certificate's PEM private key, owner-only", judge: readPem(true), default: { value: undefined }, env: 'VNUM_API_TLS_KEY' });
  addSetting(api, {
    flags: '--rate-limit <n>',
    description: `requests per second per client address, before any key is checked; 0: no limit (${RATE_LIMIT_BOUNDS.max} at most)`,
    judge: boundedInteger(RATE_LIMIT_BOUNDS),
    default: { value: API_DEFAULTS.rateLimit },
    env: 'VNUM_API_RATE_LIMIT',
  });
  addSetting(api, {
    flags: '--trust-proxy <addresses>',
    description: 'reverse proxies (addresses or CIDR) whose X-Forwarded-For names the client',
    judge: trustProxySetting,
    default: { value: undefined },
    env: 'VNUM_API_TRUST_PROXY',
  });
  addSetting(api, {
    flags: '--drain <duration>',
    description: `on SIGTERM, how long requests in flight may finish, ${span(SETTING_LIMITS.drainMs)}`,
    judge: boundedDuration(SETTING_LIMITS.drainMs),
    default: { value: 5000, shown: API_DEFAULTS.drain },
  });
  addSetting(api, {
    flags: '--metrics-port <port>',
    description: 'serve Prometheus metrics at http://<metrics-host>:<port>/metrics (a port of its own, no API key), or off',
    judge: portOrOff,
    default: { value: null, shown: 'off' },
    env: 'VNUM_API_METRICS_PORT',
  });
  addSetting(api, {
    flags: '--metrics-host <address>',
    description: 'address the metrics endpoint listens on (keep it on loopback or a monitoring network)',
    judge: hostSetting,
    default: { value: '127.0.0.1' },
    env: 'VNUM_API_METRICS_HOST',
  });
  api
    .option('--country <XX>', 'default country for numbers without + (VNUM_DEFAULT_COUNTRY); a request may name its own')
    .option(...ALLOWED_NUMBER_TYPES_OPTION)
    .addOption(pinGuessBoundOption(ErrorCode.Configuration))
    .option('--probe', 'do not serve: ask the API these settings describe whether it is ready (GET /v1/ready); exit 0 if so, 1 if not')
    .action(async (options: ApiFlags, command: Command) => {
      // Judge every setting, the logger's included, before a database is opened, created or migrated.
      const logger = createLogger();
      const settings = apiSettings(options, command);
      if (options.probe) {
        const answer = await probe(settings);
        printLine(`${answer.ok ? 'ready' : 'not ready'}: ${answer.text}`);
        process.exitCode = answer.ok ? 0 : 1;
        return;
      }
      const { authority, where } = await openApiAuthority(settings, command);
      const metrics = settings.metrics ? new HttpMetrics('vnum_api', 'HTTP API') : undefined;
      const app = await buildApi({
        metrics,
        authority,
        logger,
        defaultCountry: settings.defaultCountry,
        policy: settings.policy,
        pinGuessBound: settings.pinGuessBound,
        rateLimit: settings.rateLimit,
        trustProxy: settings.trustProxy,
        tls: settings.tls,
      });
      // The metrics endpoint binds first: a taken port stops the start before the API listens.
      let metricsServer: MetricsServer | undefined;
      try {
        if (metrics && settings.metrics) {
          metricsServer = await startMetricsServer({ host: settings.metrics.host, port: settings.metrics.port, registry: metrics.registry, logger });
        }
        await app.listen({ host: settings.host, port: settings.port, listenTextResolver: () => 'vnum api listening' });
      } catch (e) {
        await metricsServer?.close();
        await app.close().catch(() => undefined);
        await authority.close();
        const error = e as NodeJS.ErrnoException;
        if (error.syscall === 'listen' || error.syscall === 'bind' || error.syscall === 'getaddrinfo' || error.code === 'EADDRINUSE') {
          const where = metricsServer === undefined && settings.metrics ? settings.metrics : settings;
          throw new VnumError(ErrorCode.ListenFailed, `cannot listen on ${where.host}:${where.port}: ${error.message}`);
        }
        throw e;
      }
      logger.info(
        {
          store: where,
          address: `${isIP(settings.host) === 6 ? `[${settings.host}]` : settings.host}:${settings.port}`,
          tls: settings.tls !== undefined,
          rateLimit: settings.rateLimit,
          trustProxy: settings.trustProxy?.join(',') ?? null,
          defaultCountry: settings.defaultCountry ?? null,
          allowedNumberTypes: [...settings.policy.allowed].join(','),
          metrics: metricsServer ? `${metricsServer.address().host}:${metricsServer.address().port}` : 'off',
        },
        'vnum api serving this store',
      );
      if (!settings.tls && !isLoopback(settings.host)) {
        logger.warn(
          { host: settings.host },
          'plain HTTP on an address other hosts can reach: API keys and real numbers cross the network in clear; give --tls-cert and --tls-key, or put a TLS reverse proxy in front and listen on loopback',
        );
      }
      await new Promise<void>((resolve) => {
        const stop = (signal: NodeJS.Signals) => {
          process.off('SIGTERM', stop);
          process.off('SIGINT', stop);
          logger.info({ signal }, 'stopping: finishing requests in flight');
          const cut = setTimeout(() => app.server.closeAllConnections(), settings.drainMs);
          app
            .close()
            .catch((error: unknown) => logger.error({ err: error }, 'error while stopping'))
            .then(() => metricsServer?.close())
            .finally(() => {
              clearTimeout(cut);
              const commits = authority.commitStats?.();
              void authority.close().finally(() => {
                logger.info({ sessionsCreated: commits?.creates ?? null, createTransactions: commits?.transactions ?? null }, 'vnum api stopped');
                resolve();
              });
            });
        };
        process.on('SIGTERM', stop);
        process.on('SIGINT', stop);
      });
    });
}
