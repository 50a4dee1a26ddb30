import type { FastifyReply, FastifyRequest } from 'fastify';
import type { Logger } from 'pino';

declare module 'fastify' {
  interface FastifyReply {
    /** The problem's code, when the request failed. */
    problemCode: string | null;
  }
}

/**
 * Where every finished request is observed: one log line (the metrics of
 * API requests by route and status belong here too). The route is the
 * template (/v1/sessions/:id), never the URL: a path or query may carry a
 * real number. Successes are logged at debug (VNUM_LOG_LEVEL=debug logs
 * every request), refusals at info, failures at error (with the error, by
 * sendProblem).
 */
export function observeResponse(logger: Logger) {
  return async (request: FastifyRequest, reply: FastifyReply): Promise<void> => {
    const status = reply.statusCode;
    // A 5xx without a problem is a report (GET /v1/health: unhealthy), not a failure of the request.
    const level = status >= 500 && reply.problemCode !== null ? 'error' : status >= 400 ? 'info' : 'debug';
    if (!logger.isLevelEnabled(level)) return;
    logger[level](
      {
        req: request.id,
        method: request.method,
        route: request.routeOptions.url ?? null,
        status,
        ms: Math.round(reply.elapsedTime * 10) / 10,
        key: request.apiKey?.id ?? null,
        code: reply.problemCode,
        address: request.ip,
      },
      'request',
    );
  };
}
