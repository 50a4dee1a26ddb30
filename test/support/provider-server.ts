/**
 * A provider's export server for the sync tests: real HTTPS on loopback with
 * certificates made by openssl for the test (a CA of its own; a good leaf
 * for localhost and 127.0.0.1; an expired one; one for another name; a
 * self-signed one; one from another CA), and routes that misbehave the ways
 * real servers do (redirects, slowness, lies about length, web pages).
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http, { type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from 'node:http';
import https from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface TestPki {
  dir: string;
  /** PEM of the test CA: what --ca-file names. */
  caFile: string;
  ca: string;
  /** Another CA, which signed nothing the servers present. */
  otherCaFile: string;
  leaf: { key: string; cert: string };
  expired: { key: string; cert: string };
  wrongName: { key: string; cert: string };
  selfSigned: { key: string; cert: string };
  byOtherCa: { key: string; cert: string };
  cleanup(): void;
}

function openssl(dir: string, ...args: string[]): void {
  execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
}

/** Keys and certificates for one test file, made by openssl in a temp folder (EC P-256: fast). */
export function makeTestPki(): TestPki {
  const dir = mkdtempSync(join(tmpdir(), 'vnum-pki-'));
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];
  const ca = (name: string) => openssl(dir, 'req', '-x509', ...ec, '-keyout', `${name}.key`, '-out', `${name}.pem`, '-days', '2', '-subj', `/CN=vnum test ${name}`);
  ca('ca');
  ca('other-ca');
  const leaf = (name: string, san: string, days: string, signer: string | null) => {
    writeFileSync(join(dir, `${name}.ext`), `subjectAltName=${san}\n`);
    if (signer === null) {
      openssl(dir, 'req', '-x509', ...ec, '-keyout', `${name}.key`, '-out', `${name}.pem`, '-days', days, '-subj', '/CN=localhost', '-addext', `subjectAltName=${san}`);
    } else {
      openssl(dir, 'req', ...ec, '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', '/CN=localhost');
      openssl(dir, 'x509', '-req', '-in', `${name}.csr`, '-CA', `${signer}.pem`, '-CAkey', `${signer}.key`, '-CAcreateserial', '-out', `${name}.pem`, '-days', days, '-extfile', `${name}.ext`);
    }
    return { key: readFileSync(join(dir, `${name}.key`), 'utf8'), cert: readFileSync(join(dir, `${name}.pem`), 'utf8') };
  };
  const here = 'DNS:localhost,IP:127.0.0.1';
  return {
    dir,
    caFile: join(dir, 'ca.pem'),
    ca: readFileSync(join(dir, 'ca.pem'), 'utf8'),
    otherCaFile: join(dir, 'other-ca.pem'),
    leaf: leaf('leaf', here, '1', 'ca'),
    expired: leaf('expired', here, '-1', 'ca'),
    wrongName: leaf('wrong-name', 'DNS:provider.example', '1', 'ca'),
    selfSigned: leaf('self-signed', here, '1', null),
    byOtherCa: leaf('by-other-ca', here, '1', 'other-ca'),
    cleanup: () => rmSync(dir, { recursive: true, force: true }),
  };
}

export type Route = (request: IncomingMessage, response: ServerResponse, server: ProviderServer) => void;

export interface ProviderServer {
  /** `https://127.0.0.1:<port>` (or http://). */
  origin: string;
  port: number;
  /** The headers of every request, in order, with its path. */
  requests: Array<{ path: string; headers: IncomingHttpHeaders }>;
  close(): Promise<void>;
}

/** A server answering `routes` by path (404 otherwise); `tls` absent: plain HTTP. */
export async function startProviderServer(routes: Record<string, Route>, tls?: { key: string; cert: string }): Promise<ProviderServer> {
  const sockets = new Set<Socket>();
  const state: ProviderServer = { origin: '', port: 0, requests: [], close: async () => undefined };
  const handler = (request: IncomingMessage, response: ServerResponse) => {
    const path = new URL(request.url ?? '/', 'http://x').pathname;
    state.requests.push({ path, headers: request.headers });
    const route = routes[path];
    if (route === undefined) {
      response.writeHead(404, { 'content-type': 'text/plain' }).end('not found');
      return;
    }
    route(request, response, state);
  };
  const server = tls ? https.createServer({ key: tls.key, cert: tls.cert }, handler) : http.createServer(handler);
  server.on('connection', (socket: Socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  // A TLS handshake the client refuses surfaces here; nothing to do.
  server.on('tlsClientError', () => undefined);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  state.port = (server.address() as AddressInfo).port;
  state.origin = `${tls ? 'https' : 'http'}://127.0.0.1:${state.port}`;
  state.close = () =>
    new Promise<void>((resolve) => {
      for (const socket of sockets) socket.destroy();
      server.close(() => resolve());
    });
  return state;
}

export const send =
  (status: number, contentType: string | undefined, body: string | Buffer, headers: Record<string, string> = {}): Route =>
  (_request, response) => {
    response.writeHead(status, { ...(contentType !== undefined ? { 'content-type': contentType } : {}), 'content-length': String(Buffer.byteLength(body)), ...headers });
    response.end(body);
  };

export const redirect =
  (location: (server: ProviderServer) => string, status = 302): Route =>
  (_request, response, server) => {
    response.writeHead(status, { location: location(server), 'content-length': '0' }).end();
  };
