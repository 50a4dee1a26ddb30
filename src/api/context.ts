import type { FastifyReply, FastifyRequest } from 'fastify';
import type { Authority } from '../authority/authority.js';
import type { NumberPolicy } from '../numbers/policy.js';

/** What every handler works with: the authority and the API's settings for numbers. */
export interface ApiContext {
  authority: Authority;
  /** VNUM_DEFAULT_COUNTRY: the country of numbers written without +, unless a request names one. */
  defaultCountry: string | undefined;
  /** VNUM_ALLOWED_NUMBER_TYPES: the operator's; no request can widen it. */
  policy: NumberPolicy;
  /** VNUM_PIN_GUESS_BOUND: the operator's bound on one random PIN guess, which sizes the PINs a create issues; no request sets it. */
  pinGuessBound: number;
  now: () => number;
  /** The OpenAPI document, as served. */
  document: Record<string, unknown>;
}

/** A handler returns the JSON body; it sets a status other than 200 on the reply. Errors are thrown (VnumError). */
export type Handler = (request: FastifyRequest, reply: FastifyReply, context: ApiContext) => Promise<unknown>;

/** The request's query, body and path parameters, as the route's schema has already checked them. */
export function parts<Q = Record<string, never>, B = undefined, P = Record<string, never>>(request: FastifyRequest): { query: Q; body: B; params: P } {
  return { query: request.query as Q, body: request.body as B, params: request.params as P };
}
