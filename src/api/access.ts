import type { FastifyReply, FastifyRequest } from 'fastify';
import { grants, type ApiKey, type Scope } from '../access/api-keys.js';
import type { Authority } from '../authority/authority.js';
import { ErrorCode, VnumError } from '../errors.js';

declare module 'fastify' {
  interface FastifyContextConfig {
    /** The scope a key needs for the route; undefined: public. */
    scope?: Scope;
  }
  interface FastifyRequest {
    /** The key that authenticated the request, once checked. */
    apiKey: ApiKey | null;
  }
}

export interface BadKeyLimit {
  /** Requests with no key or a bad one an address may make per window before it is refused outright. */
  max: number;
  windowMs: number;
}

/** Addresses tracked at most; past it the oldest entry goes (a bounded map, whatever a flood looks like). */
const MAX_TRACKED = 100_000;

/**
 * Bad keys per client address. Over the limit, the address gets 429 before
 * its key is looked at: a flood of bad keys costs a map lookup per request,
 * not a database read. Behind a reverse proxy the address is the proxy's
 * unless VNUM_API_TRUST_PROXY names it.
 */
class BadKeyCounter {
  private readonly counts = new Map<string, { count: number; resetAt: number }>();
  constructor(private readonly limit: BadKeyLimit) {}

  /** ms until this address may try again, or 0. */
  blockedFor(address: string, now: number): number {
    const entry = this.counts.get(address);
    if (entry === undefined) return 0;
    if (entry.resetAt <= now) {
      this.counts.delete(address);
      return 0;
    }
    return entry.count >= this.limit.max ? entry.resetAt - now : 0;
  }

  failed(address: string, now: number): void {
    const entry = this.counts.get(address);
    if (entry !== undefined && entry.resetAt > now) {
      entry.count++;
      return;
    }
    this.counts.delete(address);
    if (this.counts.size >= MAX_TRACKED) this.counts.delete(this.counts.keys().next().value!);
    this.counts.set(address, { count: 1, resetAt: now + this.limit.windowMs });
  }
}

const BEARER = /^Bearer[ \t]+(\S{1,200})[ \t]*$/i;

/**
 * The onRequest hook that checks API keys, after the rate limit: a route
 * with a scope needs `Authorization: Bearer <key>` naming a key that is
 * known, not revoked, and holds that scope. Nothing runs for a request that
 * fails (401 or 403). Public routes and unknown paths pass through.
 */
export function checkApiKey(authority: Authority, limit: BadKeyLimit, now: () => number) {
  const badKeys = new BadKeyCounter(limit);
  const refuse = (address: string, at: number, message: string): VnumError => {
    badKeys.failed(address, at);
    return new VnumError(ErrorCode.Unauthorized, message);
  };
  return async (request: FastifyRequest, reply: FastifyReply): Promise<void> => {
    const scope = request.routeOptions.config.scope;
    if (scope === undefined) return;
    const at = now();
    const blocked = badKeys.blockedFor(request.ip, at);
    if (blocked > 0) {
      const seconds = Math.ceil(blocked / 1000);
      reply.header('retry-after', String(seconds));
      throw new VnumError(
        ErrorCode.RateLimited,
        `too many requests without a valid API key from ${request.ip}: retry in ${seconds} s`,
      );
    }
    const header = request.headers.authorization;
    if (header === undefined) throw refuse(request.ip, at, 'no API key: send "Authorization: Bearer <key>" (keys come from vnum apikey create)');
    const token = BEARER.exec(header)?.[1];
    if (token === undefined) throw refuse(request.ip, at, 'the Authorization header is not "Bearer <key>"');
    const check = await authority.verifyApiKey(token, at);
    if (!check.ok) {
      throw refuse(request.ip, at, check.reason === 'revoked' ? 'this API key has been revoked' : 'unknown API key');
    }
    request.apiKey = check.key;
    if (!grants(check.key.scopes, scope)) {
      throw new VnumError(
        ErrorCode.Forbidden,
        `API key "${check.key.name}" (scopes ${check.key.scopes.join(', ')}) does not grant ${scope}, which this request needs`,
      );
    }
  };
}
