import type { Logger } from 'pino';
import { openDb, type Db } from '../store/db.js';
import { redactNumber } from '../log.js';
import { decideRoute, type BridgeLookup, type RouteDecision, type RouteStatus } from './decide.js';
import { storeBridgeLookup } from './lookup.js';

/** What the dialplan reads back from the router (see dialplan/vnum.conf). */
export interface ChannelVariables {
  VNUM_STATUS: RouteStatus;
  VNUM_TARGET: string;
  VNUM_CLI: string;
  VNUM_SESSION: string;
}

export function channelVariables(decision: RouteDecision): ChannelVariables {
  return {
    VNUM_STATUS: decision.status,
    VNUM_TARGET: decision.target ?? '',
    VNUM_CLI: decision.cli ?? '',
    VNUM_SESSION: decision.session ?? '',
  };
}

export interface CallRouterOptions {
  dbPath: string;
  defaultCountry?: string | undefined;
  logger: Logger;
  now?: () => number;
  /** After a database failure, wait this long before reopening it. */
  reopenDelayMs?: number;
}

export interface CallRouter {
  route(call: { callerId: string; extension: string; dnid: string }): ChannelVariables;
  close(): void;
}

/**
 * The router's side of the store: one read connection, reopened by itself
 * after a failure (file replaced, unreadable, corrupt, locked), answering
 * ERROR meanwhile so the dialplan fails closed.
 */
export function createCallRouter(options: CallRouterOptions): CallRouter {
  const now = options.now ?? Date.now;
  const reopenDelayMs = options.reopenDelayMs ?? 1_000;
  let db: Db | undefined;
  let lookup: BridgeLookup | undefined;
  let retryAt = 0;

  const fail = (error: unknown): ChannelVariables => {
    options.logger.error({ err: error }, 'store failed; answering ERROR until it reopens');
    try {
      db?.close();
    } catch {
      // already unusable
    }
    db = undefined;
    lookup = undefined;
    retryAt = now() + reopenDelayMs;
    return channelVariables({ status: 'ERROR', target: null, cli: null, session: null });
  };

  return {
    route(call) {
      if (!lookup) {
        if (now() < retryAt) return channelVariables({ status: 'ERROR', target: null, cli: null, session: null });
        try {
          db = openDb(options.dbPath);
          lookup = storeBridgeLookup(db);
        } catch (error) {
          return fail(error);
        }
      }
      // agi_extension is the dialled DID; agi_dnid when the extension was rewritten (e.g. to "s").
      const dialled = /\d/.test(call.extension) ? call.extension : call.dnid;
      try {
        const decision = decideRoute({ caller: call.callerId, dialled }, now(), lookup, options.defaultCountry);
        if (decision.status === 'INVALID') {
          options.logger.info({ caller: redactNumber(call.callerId.slice(0, 40)), reason: decision.reason }, 'invalid call');
        }
        return channelVariables(decision);
      } catch (error) {
        return fail(error);
      }
    },
    close() {
      db?.close();
      db = undefined;
      lookup = undefined;
    },
  };
}
