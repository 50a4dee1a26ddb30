import type { Command } from 'commander';
import { startRouter, ROUTER_DEFAULTS, type RouteFunction } from '../../agi/server.js';
import { DEFAULT_ALLOW } from '../../agi/allow-list.js';
import { AmiClient } from '../ami/client.js';
import { amiSettings } from '../ami/config.js';
import { CALL_EVENT_CLASSES, CALL_EVENTS } from '../calls/facts.js';
import { CallTracker } from '../calls/tracker.js';
import { ErrorCode, VnumError } from '../errors.js';
import { parseDuration } from '../duration.js';
import { createLogger } from '../log.js';
import { createCallRouter } from '../routing/service.js';
import { openDb, resolveDbPath } from '../store/db.js';
import { ALLOWED_NUMBER_TYPES_OPTION, defaultCountry, globalOptions, numberPolicy } from './context.js';

interface ServeOptions {
  host: string;
  port: string;
  allow: string;
  maxConnections: string;
  deadline: string;
  drain: string;
  amiHost?: string;
  amiPort?: string;
  amiUser?: string;
  amiSecretFile?: string;
}

/** The router's key in router_status, as `vnum health` computes it from the same flags. */
export function routerKey(host: string, port: number | string): string {
  return `${host}:${port}`;
}

function positiveInteger(text: string, what: string, max: number): number {
  const value = Number(text);
  if (!/^\d+$/.test(text) || value < 1 || value > max) {
    throw new VnumError(ErrorCode.InvalidArgument, `invalid ${what} "${text}": a whole number from 1 to ${max}`);
  }
  return value;
}

export function registerServe(program: Command): void {
  program
    .command('serve')
    .description('run the FastAGI call router that dialplan/vnum.conf asks for each call')
    .option('--host <address>', 'address to listen on (VNUM_AGI_HOST)', process.env.VNUM_AGI_HOST ?? ROUTER_DEFAULTS.host)
    .option('--port <port>', 'TCP port (VNUM_AGI_PORT)', process.env.VNUM_AGI_PORT ?? String(ROUTER_DEFAULTS.port))
    .option(
      '--allow <addresses>',
      'comma-separated addresses or CIDR subnets allowed to connect: your Asterisk (VNUM_AGI_ALLOW)',
      process.env.VNUM_AGI_ALLOW ?? DEFAULT_ALLOW.join(','),
    )
    .option('--max-connections <n>', 'concurrent calls being routed', String(ROUTER_DEFAULTS.maxConnections))
    .option('--deadline <duration>', 'hard limit on one routing session', `${ROUTER_DEFAULTS.sessionDeadlineMs}ms`)
    .option('--drain <duration>', 'on SIGTERM, how long in-flight sessions may finish', '2s')
    .option('--country <XX>', 'default country for numbers without + (VNUM_DEFAULT_COUNTRY)')
    .option(...ALLOWED_NUMBER_TYPES_OPTION)
    .option('--ami-user <name>', 'AMI user: turns on the call log and hang-ups through AMI (VNUM_AMI_USER)')
    .option('--ami-host <address>', 'AMI address (VNUM_AMI_HOST, default 127.0.0.1)')
    .option('--ami-port <port>', 'AMI port (VNUM_AMI_PORT, default 5038)')
    .option('--ami-secret-file <file>', 'file holding the AMI secret (VNUM_AMI_SECRET_FILE; or VNUM_AMI_SECRET)')
    .action(async (options: ServeOptions, command: Command) => {
      const logger = createLogger();
      const dbPath = resolveDbPath(globalOptions(command).db);
      const port = Number(options.port);
      if (!/^\d+$/.test(options.port) || port > 65535) {
        throw new VnumError(ErrorCode.InvalidArgument, `invalid port "${options.port}"`);
      }
      const allow = options.allow.split(',').map((a) => a.trim()).filter(Boolean);
      const maxConnections = positiveInteger(options.maxConnections, 'max connections', 100_000);
      const sessionDeadlineMs = parseDuration(options.deadline, 'deadline');
      const drainMs = parseDuration(options.drain, 'drain time');
      const ami = amiSettings(options);
      const country = defaultCountry(command);
      const policy = numberPolicy(command);
      // Open once now so a wrong path or a broken file stops the start, not the first call.
      openDb(dbPath).close();
      const calls = createCallRouter({ dbPath, defaultCountry: country, policy, logger });
      const amiClient = ami.settings
        ? new AmiClient({ ...ami.settings, eventClasses: CALL_EVENT_CLASSES, events: CALL_EVENTS, logger })
        : null;
      const tracker = new CallTracker({ dbPath, ami: amiClient, router: routerKey(options.host, port), logger });
      const route: RouteFunction = amiClient
        ? (call) => {
            const answer = calls.route(call);
            tracker.routed(call, answer);
            return answer;
          }
        : calls.route;
      let router;
      try {
        router = await startRouter({ host: options.host, port, allow, maxConnections, sessionDeadlineMs, logger, route });
      } catch (e) {
        calls.close();
        throw new VnumError(ErrorCode.InvalidArgument, `cannot listen on ${options.host}:${options.port}: ${(e as Error).message}`);
      }
      for (const warning of ami.warnings) logger.warn(warning);
      tracker.start();
      amiClient?.start();
      logger.info(
        {
          db: dbPath,
          defaultCountry: country ?? null,
          allowedNumberTypes: [...policy.allowed].join(','),
          ami: ami.settings ? `${ami.settings.username}@${ami.settings.host}:${ami.settings.port}` : 'off',
        },
        'vnum router routing from this store',
      );
      await new Promise<void>((resolve) => {
        const stop = (signal: NodeJS.Signals) => {
          process.off('SIGTERM', stop);
          process.off('SIGINT', stop);
          logger.info({ signal, inFlight: router.connections() }, 'stopping: finishing calls in flight');
          router
            .close(drainMs)
            .catch((error: unknown) => logger.error({ err: error }, 'error while stopping'))
            .then(() => amiClient?.stop())
            .then(() => tracker.stop())
            .catch((error: unknown) => logger.error({ err: error }, 'error while stopping AMI'))
            .finally(() => {
              calls.close();
              logger.info('vnum router stopped');
              resolve();
            });
        };
        process.on('SIGTERM', stop);
        process.on('SIGINT', stop);
      });
    });
}
