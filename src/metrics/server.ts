/**
 * The HTTP endpoint Prometheus scrapes: GET /metrics on an address of its own
 * (loopback by default), nothing else. No body is read, nothing is written to
 * the store; a scrape costs the formatting of what ./prom.ts reads.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from 'pino';
import type { MetricsRegistry } from './prom.js';

export interface MetricsServer {
  address(): { host: string; port: number };
  close(): Promise<void>;
}

export async function startMetricsServer(options: { host: string; port: number; registry: MetricsRegistry; logger: Logger }): Promise<MetricsServer> {
  const log = options.logger.child({ component: 'metrics' });
  const server: Server = createServer((request, response) => {
    const path = (request.url ?? '').split('?')[0];
    if (path !== '/metrics') {
      response.writeHead(404, { 'content-type': 'text/plain; charset=utf-8' }).end('not found: Prometheus metrics are at /metrics\n');
      return;
    }
    if (request.method !== 'GET' && request.method !== 'HEAD') {
      response.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/plain; charset=utf-8' }).end('method not allowed: GET /metrics\n');
      return;
    }
    options.registry.exposition().then(
      ({ contentType, body }) => response.writeHead(200, { 'content-type': contentType }).end(request.method === 'HEAD' ? undefined : body),
      (error: unknown) => {
        log.error({ err: error }, 'metrics: exposition failed');
        response.writeHead(500, { 'content-type': 'text/plain; charset=utf-8' }).end('metrics failed; see the log\n');
      },
    );
  });
  // A scraper that never finishes its request must not hold a socket for ever.
  server.requestTimeout = 10_000;
  server.headersTimeout = 5_000;
  server.keepAliveTimeout = 30_000;
  server.maxHeadersCount = 50;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host: options.host, port: options.port }, () => {
      server.off('error', reject);
      resolve();
    });
  });
  server.on('error', (error: NodeJS.ErrnoException) => log.warn({ code: error.code }, 'metrics listener error'));
  const bound = server.address() as AddressInfo;
  const address = Object.freeze({ host: bound.address, port: bound.port });
  log.info({ host: address.host, port: address.port }, 'metrics listening');
  return {
    address: () => address,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
