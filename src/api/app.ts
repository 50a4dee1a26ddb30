import { randomUUID } from 'node:crypto';
import type { Socket } from 'node:net';
import rateLimit from '@fastify/rate-limit';
import { Ajv2020 } from 'ajv/dist/2020.js';
import Fastify, { LogController, type FastifyError, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import type { Logger } from 'pino';
import type { Authority } from '../authority/authority.js';
import { ErrorCode, VnumError } from '../errors.js';
import type { HttpMetrics } from '../metrics/http.js';
import type { NumberPolicy } from '../numbers/policy.js';
import { DEFAULT_PIN_GUESS_BOUND } from '../session/pin.js';
import { checkApiKey, type BadKeyLimit } from './access.js';
import type { ApiContext, Handler } from './context.js';
import { API_LIMITS } from './limits.js';
import { lingerOnRefusedBody } from './linger.js';
import { observeResponse } from './observe.js';
import { openApiDocument } from './openapi.js';
import { POOL_HANDLERS } from './pool.js';
import { frameworkError, PROBLEM_TYPE, problemOf, STATUS_OF } from './problem.js';
import { READ_HANDLERS } from './reads.js';
import { routeDefinitions, type RouteDefinition } from './routes.js';
import { SESSION_HANDLERS } from './sessions.js';

export interface ApiOptions {
  authority: Authority;
  logger: Logger;
  defaultCountry: string | undefined;
  policy: NumberPolicy;
  /** VNUM_PIN_GUESS_BOUND: sizes the PINs a create issues (DEFAULT_PIN_GUESS_BOUND when absent). */
  pinGuessBound?: number | undefined;
  /** Requests per second per client address, before any key is looked at; 0: no limit. */
  rateLimit: number;
  /** Requests without a valid key an address may make before it is refused outright. */
  badKeys?: BadKeyLimit;
  /** Addresses (or CIDR ranges) of reverse proxies whose X-Forwarded-For names the client. */
  trustProxy?: string[] | undefined;
  /** TLS: PEM certificate chain and private key. */
  tls?: { cert: Buffer; key: Buffer } | undefined;
  /** Requests counted by route template, method and status (vnum api --metrics-port). */
  metrics?: HttpMetrics | undefined;
  now?: () => number;
}

export const DEFAULT_BAD_KEYS: BadKeyLimit = { max: 30, windowMs: 60_000 };

/** Every operation of the document, and its handler. */
export const HANDLERS: Readonly<Record<string, Handler>> = { ...SESSION_HANDLERS, ...POOL_HANDLERS, ...READ_HANDLERS };

/**
 * The HTTP API: fastify with the document's schemas on every route, bodies
 * validated without coercion or dropping (an unknown field or a wrong type is
 * refused), query and path parameters coerced from text but never unknown,
 * a body limit, the rate limit before the key check, and every error (ours,
 * fastify's FST_ERR_*, a malformed HTTP request) as problem+json.
 */
export async function buildApi(options: ApiOptions): Promise<FastifyInstance> {
  const document = openApiDocument();
  const now = options.now ?? Date.now;
  const context: ApiContext = {
    authority: options.authority,
    defaultCountry: options.defaultCountry,
    policy: options.policy,
    pinGuessBound: options.pinGuessBound ?? DEFAULT_PIN_GUESS_BOUND,
    now,
    document,
  };
  const { logger } = options;

  const app = Fastify({
    loggerInstance: logger,
    // One line per request, ours (./observe.ts): route templates, never URLs, which may carry numbers.
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: API_LIMITS.jsonBodyBytes,
    exposeHeadRoutes: false,
    genReqId: () => randomUUID(),
    requestIdHeader: false,
    trustProxy: options.trustProxy && options.trustProxy.length > 0 ? options.trustProxy : false,
    onProtoPoisoning: 'error',
    onConstructorPoisoning: 'error',
    // Requests arriving while it closes are served (the store is still open) rather than cut with a non-problem 503.
    return503OnClosing: false,
    // Receiving a request may take this long (slow-loris); answering it is not bounded by this.
    requestTimeout: 30_000,
    routerOptions: { maxParamLength: 100 },
    ...(options.tls ? { https: { cert: options.tls.cert, key: options.tls.key, minVersion: 'TLSv1.2' as const } } : {}),
    frameworkErrors: (error: FastifyError, request: FastifyRequest, reply: FastifyReply) => {
      sendProblem(request, reply, frameworkError(error));
    },
    clientErrorHandler: (error: Error & { code?: string }, socket: Socket) => {
      if (error.code === 'ECONNRESET' || socket.destroyed || !socket.writable) return;
      const body = JSON.stringify(problemOf(new VnumError(ErrorCode.InvalidArgument, `malformed HTTP request (${error.code ?? 'unknown'})`), undefined));
      socket.end(
        `HTTP/1.1 400 Bad Request\r\nContent-Type: ${PROBLEM_TYPE}\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
      );
    },
  } as Parameters<typeof Fastify>[0]) as unknown as FastifyInstance;

  // Bodies: nothing dropped, nothing coerced. Parameters arrive as text: coerced to the documented type, defaults applied, unknown ones refused.
  const bodies = new Ajv2020({ allErrors: true, strict: true, coerceTypes: false, removeAdditional: false, useDefaults: false });
  // strictNumbers off: with coercion on, Ajv 8's strict number check lets "1e309" through as Infinity (measured); off, the bounds refuse it.
  const parameters = new Ajv2020({ allErrors: true, strict: true, strictNumbers: false, coerceTypes: true, removeAdditional: false, useDefaults: true });
  app.setValidatorCompiler(({ schema, httpPart }) => (httpPart === 'body' ? bodies : parameters).compile(schema));

  // application/json (fastify's, proto-poisoning refused) and text/csv only: anything else is 415.
  app.removeContentTypeParser('text/plain');
  app.addContentTypeParser('text/csv', { parseAs: 'string' }, (_request, body, done) => done(null, body));

  app.decorateRequest('apiKey', null);
  app.decorateReply('problemCode', null);
  app.setErrorHandler((error: FastifyError, request, reply) => {
    sendProblem(request, reply, error instanceof VnumError ? error : frameworkError(error, request.headers['content-type']), error);
  });

  // Once closing, every answer closes its connection: a keep-alive connection would hold the close up until the drain cuts it.
  let closing = false;
  app.addHook('preClose', async () => {
    closing = true;
  });
  // Responses carry real numbers: never cached; the request id names the log line.
  app.addHook('onSend', async (request, reply) => {
    if (closing) reply.header('connection', 'close');
    else lingerOnRefusedBody(request, reply);
    reply.header('x-request-id', request.id);
    reply.header('cache-control', 'no-store');
    reply.header('x-content-type-options', 'nosniff');
  });
  app.addHook('onResponse', observeResponse(logger));
  const metrics = options.metrics;
  if (metrics) {
    // The template the request matched (undefined: none), never its URL.
    app.addHook('onResponse', async (request, reply) => metrics.observe(request.method, request.routeOptions.url, reply.statusCode, reply.elapsedTime / 1000));
  }

  // The rate limit first (on each route's onRequest, ahead of the key check added below), per client address.
  await app.register(rateLimit, {
    global: options.rateLimit > 0,
    max: options.rateLimit > 0 ? options.rateLimit : 1,
    timeWindow: 1000,
    hook: 'onRequest',
    errorResponseBuilder: (_request, limit) =>
      Object.assign(new VnumError(ErrorCode.RateLimited, `more than ${limit.max} requests per second from this address: retry in ${limit.after}`), {
        statusCode: 429,
      }),
  });
  const keyCheck = checkApiKey(options.authority, options.badKeys ?? DEFAULT_BAD_KEYS, now);
  app.addHook('onRoute', (route) => {
    route.onRequest = [...(route.onRequest === undefined ? [] : Array.isArray(route.onRequest) ? route.onRequest : [route.onRequest]), keyCheck];
  });
  app.setNotFoundHandler({ preHandler: options.rateLimit > 0 ? app.rateLimit() : undefined }, (request, reply) => {
    sendProblem(request, reply, new VnumError(ErrorCode.NotFound, `no such resource: ${request.method} ${request.url.split('?')[0]!.slice(0, 200)}`));
  });

  for (const definition of routeDefinitions(document)) {
    const handler = HANDLERS[definition.operationId];
    if (handler === undefined) throw new Error(`no handler for operation ${definition.operationId}`);
    app.route({
      method: definition.method,
      url: definition.url,
      schema: definition.schema,
      config: { scope: definition.scope },
      bodyLimit: definition.bodyTypes.includes('text/csv') ? API_LIMITS.csvBodyBytes : API_LIMITS.jsonBodyBytes,
      preValidation: bodyCheck(definition),
      handler: (request, reply) => handler(request, reply, context),
    });
  }
  return app;
}

/** The body has a media type the operation takes, or there is none and it takes none (or takes one optionally). */
function bodyCheck(definition: RouteDefinition) {
  return async (request: FastifyRequest): Promise<void> => {
    const type = request.headers['content-type']?.split(';')[0]!.trim().toLowerCase();
    if (request.body === undefined) {
      if (definition.bodyRequired) {
        throw new VnumError(ErrorCode.InvalidArgument, `this operation needs a body (${definition.bodyTypes.join(' or ')})`);
      }
      if (definition.bodyTypes.length > 0) request.body = {};
      return;
    }
    if (definition.bodyTypes.length === 0) throw new VnumError(ErrorCode.InvalidArgument, 'this operation takes no body');
    if (type === undefined || !definition.bodyTypes.includes(type)) {
      throw new VnumError(ErrorCode.UnsupportedMediaType, `Content-Type ${type ?? '(none)'}: this operation takes ${definition.bodyTypes.join(' or ')}`);
    }
  };
}

/** `cause`: what was thrown, when it was not already ours (logged, never sent). */
function sendProblem(request: FastifyRequest, reply: FastifyReply, error: VnumError, cause: unknown = error): void {
  const problem = problemOf(error, request.id);
  if (problem.status >= 500) request.log.error({ err: cause, code: error.code, req: request.id }, 'request failed');
  if (error.code === ErrorCode.DatabaseBusy || error.code === ErrorCode.AuthorityUnavailable) reply.header('retry-after', '1');
  if (error.code === ErrorCode.Unauthorized) reply.header('www-authenticate', 'Bearer realm="vnum"');
  reply.problemCode = error.code;
  reply.code(STATUS_OF[error.code]).type(PROBLEM_TYPE).send(problem);
}
