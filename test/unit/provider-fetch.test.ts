/**
 * Fetching a provider's export (src/provider/): against REAL HTTPS servers on
 * loopback, with a CA and certificates openssl makes for this file. Every
 * failure the policy promises a clear error for is made to happen: DNS, a
 * refused connection, each kind of bad certificate, TLS to a plain server,
 * HTTP statuses, redirects (relative, cross-origin, to http, loops), a slow
 * server, an oversized or cut-short body, an encoding not asked for.
 */
import { chmodSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ErrorCode, VnumError } from '../../src/errors.js';
import { fetchExport, type FetchPolicy } from '../../src/provider/fetch.js';
import { authHeader, fetchPolicy, parseSize } from '../../src/cli/sync-settings.js';
import { freePort } from '../support/net.js';
import { errorOf } from '../support/errors.js';
import { makeTestPki, redirect, send, startProviderServer, type ProviderServer, type Route, type TestPki } from '../support/provider-server.js';

const EXPORT = JSON.stringify([{ number: '+442079460001' }, { number: '+442079460002' }]);
const TOKEN = 'tok-3f9a1c77e0b24d5e';

let pki: TestPki;
let good: ProviderServer;
const servers: ProviderServer[] = [];

async function server(routes: Record<string, Route>, tls?: { key: string; cert: string }): Promise<ProviderServer> {
  const s = await startProviderServer(routes, tls);
  servers.push(s);
  return s;
}

const routes: Record<string, Route> = {
  '/export.json': send(200, 'application/json', EXPORT),
  '/export.csv': send(200, 'text/csv; charset=utf-8', 'number\n+442079460001\n'),
  '/moved': redirect(() => '/export.json'),
  '/moved-twice': redirect(() => '/moved', 301),
  '/loop': redirect(() => '/loop', 307),
  '/no-location': (_q, r) => r.writeHead(302, { 'content-length': '0' }).end(),
  '/to-localhost': redirect((s) => `https://localhost:${s.port}/needs-token`),
  '/needs-token': (q, r) => (q.headers.authorization === `Bearer ${TOKEN}` ? send(200, 'application/json', EXPORT)(q, r, good) : send(401, 'text/plain', 'no')(q, r, good)),
  '/missing': send(404, 'text/plain', 'not here'),
  '/broken': send(500, 'text/plain', 'oops'),
  '/forbidden': send(403, 'text/plain', 'no'),
  '/no-content': (_q, r) => r.writeHead(204).end(),
  '/gzip': send(200, 'application/json', Buffer.from([0x1f, 0x8b]), { 'content-encoding': 'gzip' }),
  '/announces-too-much': (_q, r) => {
    r.writeHead(200, { 'content-type': 'application/json', 'content-length': String(64 * 1024 * 1024) });
    r.write('[');
  },
  '/streams-too-much': (_q, r) => {
    r.writeHead(200, { 'content-type': 'text/csv' });
    const line = '+442079460001\n'.repeat(1000);
    const pump = () => {
      while (r.write(line)) if (r.writableLength > 4 * 1024 * 1024) return;
      r.once('drain', pump);
    };
    pump();
    r.on('close', () => undefined);
  },
  '/cut-short': (q, r) => {
    r.writeHead(200, { 'content-type': 'application/json', 'content-length': '1000' });
    r.write(EXPORT.slice(0, 20), () => q.socket.destroy());
  },
  '/cut-short-chunked': (q, r) => {
    r.writeHead(200, { 'content-type': 'application/json' });
    r.write(EXPORT.slice(0, 20), () => q.socket.destroy());
  },
  '/drip': (_q, r) => {
    r.writeHead(200, { 'content-type': 'application/json', 'content-length': String(EXPORT.length) });
    let i = 0;
    const timer = setInterval(() => (i < EXPORT.length ? r.write(EXPORT[i++]!) : clearInterval(timer)), 100);
    r.on('close', () => clearInterval(timer));
  },
  '/hang': () => undefined,
  '/to-http': redirect(() => 'http://127.0.0.1:1/export.json'),
  '/signed': send(500, 'text/plain', 'x'),
};

beforeAll(async () => {
  pki = makeTestPki();
  good = await server(routes, pki.leaf);
}, 60_000);
afterAll(async () => {
  await Promise.all(servers.map((s) => s.close()));
  pki?.cleanup();
});

const policy = (more: Partial<FetchPolicy> = {}): FetchPolicy => ({
  allowHttp: false,
  ca: pki.ca,
  timeoutMs: 5_000,
  maxBytes: 1024 * 1024,
  maxRedirects: 5,
  userAgent: 'vnum/test',
  ...more,
});

async function failure(url: string, more: Partial<FetchPolicy> = {}): Promise<VnumError> {
  try {
    await fetchExport(new URL(url), policy(more));
  } catch (e) {
    if (e instanceof VnumError) return e;
    throw e;
  }
  throw new Error(`fetching ${url} succeeded`);
}

describe('fetching over HTTPS', () => {
  it('fetches the export, trusting only the CA given, and says what it declared', async () => {
    const fetched = await fetchExport(new URL(`${good.origin}/export.json`), policy());
    expect(fetched.body.toString()).toBe(EXPORT);
    expect(fetched.contentType).toBe('application/json');
    const seen = good.requests.at(-1)!.headers;
    expect(seen['accept-encoding']).toBe('identity');
    expect(seen['user-agent']).toBe('vnum/test');
    expect(seen.authorization).toBeUndefined();
  });

  it('refuses a certificate the system does not trust, and names --ca-file', async () => {
    const error = await failure(`${good.origin}/export.json`, { ca: undefined });
    expect(error.code).toBe(ErrorCode.FetchFailed);
    expect(error.message).toBe(
      "TLS: the certificate of 127.0.0.1 is signed not by a CA this system trusts; for a provider's private CA, give it with --ca-file (UNABLE_TO_VERIFY_LEAF_SIGNATURE)",
    );
  });

  it('refuses an expired certificate, one for another name, a self-signed one, one from another CA', async () => {
    const expired = await server(routes, pki.expired);
    expect((await failure(`${expired.origin}/export.json`)).message).toBe('TLS: the certificate of 127.0.0.1 has expired (CERT_HAS_EXPIRED)');
    const wrongName = await server(routes, pki.wrongName);
    expect((await failure(`${wrongName.origin}/export.json`)).message).toBe('TLS: the certificate of 127.0.0.1 is for other names (ERR_TLS_CERT_ALTNAME_INVALID)');
    const selfSigned = await server(routes, pki.selfSigned);
    expect((await failure(`${selfSigned.origin}/export.json`)).message).toBe(
      'TLS: the certificate of 127.0.0.1 is signed not by a CA in --ca-file (DEPTH_ZERO_SELF_SIGNED_CERT)',
    );
    const other = await server(routes, pki.byOtherCa);
    expect((await failure(`${other.origin}/export.json`)).message).toBe('TLS: the certificate of 127.0.0.1 is signed not by a CA in --ca-file (UNABLE_TO_VERIFY_LEAF_SIGNATURE)');
    // The same server is fine for a client given its CA: the refusals were about trust, not the server.
    const ca = fetchPolicy({ caFile: pki.otherCaFile, timeout: '5s', maxSize: '1MiB', maxRedirects: '0' }, {}).ca;
    expect((await fetchExport(new URL(`${other.origin}/export.json`), policy({ ca }))).body.toString()).toBe(EXPORT);
  });

  it('names DNS, a refused connection, and TLS spoken to a plain HTTP server', async () => {
    expect((await failure('https://nothing.invalid/export.json')).message).toBe('cannot resolve nothing.invalid (DNS: ENOTFOUND)');
    const closed = await freePort();
    expect((await failure(`https://127.0.0.1:${closed}/export.json`)).message).toBe(`127.0.0.1:${closed} refused the connection`);
    const plain = await server(routes);
    const error = await failure(`https://127.0.0.1:${plain.port}/export.json`);
    expect(error.message).toMatch(new RegExp(`^TLS handshake with 127\\.0\\.0\\.1:${plain.port} failed \\((ERR_SSL_WRONG_VERSION_NUMBER|EPROTO)\\): is it an https server\\?$`));
  });

  it('names the HTTP status, with a hint for 401 and 403; accepts 200 only (and 203)', async () => {
    expect((await failure(`${good.origin}/missing`)).message).toBe(`${good.origin}/missing answered HTTP 404 Not Found`);
    expect((await failure(`${good.origin}/broken`)).message).toBe(`${good.origin}/broken answered HTTP 500 Internal Server Error`);
    expect((await failure(`${good.origin}/forbidden`)).message).toBe(
      `${good.origin}/forbidden answered HTTP 403 Forbidden: check the token (--token-file, VNUM_SYNC_TOKEN_FILE) and --auth`,
    );
    expect((await failure(`${good.origin}/no-content`)).message).toBe(`${good.origin}/no-content answered HTTP 204 No Content`);
    // The query may carry a signature: never shown.
    expect((await failure(`${good.origin}/missing?X-Amz-Signature=secret`)).message).toBe(`${good.origin}/missing?… answered HTTP 404 Not Found`);
  });
});

describe('redirects', () => {
  it('follows them (relative locations too), up to --max-redirects', async () => {
    expect((await fetchExport(new URL(`${good.origin}/moved-twice`), policy())).url.pathname).toBe('/export.json');
    expect((await failure(`${good.origin}/moved-twice`, { maxRedirects: 1 })).message).toBe(
      `${good.origin}/moved-twice: more than 1 redirects (--max-redirects), the last to ${good.origin}/export.json`,
    );
    expect((await failure(`${good.origin}/loop`)).message).toBe(`${good.origin}/loop: more than 5 redirects (--max-redirects), the last to ${good.origin}/loop`);
    expect((await failure(`${good.origin}/no-location`)).message).toBe(`${good.origin}/no-location answered HTTP 302 without a Location`);
  });

  it('sends the token to the export\'s own origin only, never across a redirect', async () => {
    const auth = authHeader('bearer', TOKEN);
    expect((await fetchExport(new URL(`${good.origin}/needs-token`), policy({ auth }))).body.toString()).toBe(EXPORT);
    const before = good.requests.length;
    const error = await failure(`${good.origin}/to-localhost`, { auth });
    // 127.0.0.1 -> localhost is another origin: the second request went without the token.
    expect(good.requests.slice(before).map((r) => [r.path, r.headers.authorization])).toEqual([
      ['/to-localhost', `Bearer ${TOKEN}`],
      ['/needs-token', undefined],
    ]);
    expect(error.message).toBe(
      `https://localhost:${good.port}/needs-token answered HTTP 401 Unauthorized (redirected from 127.0.0.1:${good.port}; the token goes to 127.0.0.1:${good.port} only): check the token (--token-file, VNUM_SYNC_TOKEN_FILE) and --auth`,
    );
    expect(error.message).not.toContain(TOKEN);
  });

  it('refuses a redirect from https to plain http', async () => {
    const error = await failure(`${good.origin}/to-http`);
    expect(error.code).toBe(ErrorCode.FetchFailed);
    expect(error.message).toMatch(/redirected to http:\/\/127\.0\.0\.1:1\/export\.json, which is plain http:\/\/: refused/);
  });
});

describe('the body', () => {
  it('gives up on a server too slow to finish within --timeout, whether it drips or hangs', async () => {
    const started = Date.now();
    expect((await failure(`${good.origin}/drip`, { timeoutMs: 1_000 })).message).toBe(`no complete answer from ${good.origin}/drip within 1s (--timeout)`);
    expect((await failure(`${good.origin}/hang`, { timeoutMs: 1_000 })).message).toBe(`no complete answer from ${good.origin}/hang within 1s (--timeout)`);
    expect(Date.now() - started).toBeLessThan(10_000);
  });

  it('refuses a body over --max-size, announced or streamed, without reading the rest', async () => {
    const announced = await failure(`${good.origin}/announces-too-much`);
    expect(announced.code).toBe(ErrorCode.InvalidExport);
    expect(announced.message).toBe(`${good.origin}/announces-too-much announces 67108864 bytes, more than --max-size (1048576 bytes): refused`);
    const streamed = await failure(`${good.origin}/streams-too-much`);
    expect(streamed.message).toBe(`${good.origin}/streams-too-much sent more than 1048576 bytes, more than --max-size (1048576 bytes): refused`);
  });

  it('never takes a body cut short for the whole export', async () => {
    expect((await failure(`${good.origin}/cut-short`)).message).toBe(`${good.origin}/cut-short closed the connection after 20 of 1000 bytes: the export arrived cut short`);
    expect((await failure(`${good.origin}/cut-short-chunked`)).message).toBe(`${good.origin}/cut-short-chunked closed the connection after 20 bytes: the export arrived cut short`);
  });

  it('refuses an encoding it did not ask for', async () => {
    expect((await failure(`${good.origin}/gzip`)).message).toBe(`${good.origin}/gzip sent the export gzip-encoded although asked for identity`);
  });
});

describe('the fetch settings (before any connection)', () => {
  const flags = { timeout: '30s', maxSize: '16MiB', maxRedirects: '5' };

  it('plain http only with --allow-http, and never with a token; no credentials in the URL', async () => {
    const plain = await server(routes);
    const url = `${plain.origin}/export.csv`;
    const refused = await failure(url);
    expect(refused.code).toBe(ErrorCode.InvalidArgument);
    expect(refused.message).toBe(
      `${url} is plain http://: refused (the export could be altered on the way); use https://, or --allow-http for a server on a network you trust`,
    );
    expect((await fetchExport(new URL(url), policy({ allowHttp: true }))).body.toString()).toBe('number\n+442079460001\n');
    expect((await failure(url, { allowHttp: true, auth: authHeader('bearer', TOKEN) })).message).toBe(`${url} is plain http://: a token is never sent in clear; use https://`);
    expect(plain.requests.length).toBe(1);
    expect((await failure(`https://user:${TOKEN}@127.0.0.1:${good.port}/export.json`)).message).toBe(
      `https://127.0.0.1:${good.port}/export.json carries credentials in the URL (visible in ps and logs): give the token with --token-file or VNUM_SYNC_TOKEN_FILE`,
    );
    expect((await failure('ftp://127.0.0.1/export.csv')).message).toBe('ftp://127.0.0.1/export.csv is not an https:// URL (ftp: is not fetched)');
  });

  it('reads the token from an owner-only file or the environment, and sends it as the scheme says', () => {
    const file = join(pki.dir, 'token');
    writeFileSync(file, `${TOKEN}\n`, { mode: 0o600 });
    expect(fetchPolicy({ ...flags, tokenFile: file }, {}).auth).toEqual({ header: 'authorization', value: `Bearer ${TOKEN}` });
    expect(fetchPolicy({ ...flags }, { VNUM_SYNC_TOKEN_FILE: file }).auth).toEqual({ header: 'authorization', value: `Bearer ${TOKEN}` });
    expect(fetchPolicy({ ...flags, auth: 'header:X-Api-Key' }, { VNUM_SYNC_TOKEN: TOKEN }).auth).toEqual({ header: 'x-api-key', value: TOKEN });
    expect(fetchPolicy({ ...flags, auth: 'basic' }, { VNUM_SYNC_TOKEN: 'AC123:secret' }).auth).toEqual({
      header: 'authorization',
      value: `Basic ${Buffer.from('AC123:secret').toString('base64')}`,
    });
    expect(fetchPolicy({ ...flags }, {}).auth).toBeUndefined();
    chmodSync(file, 0o644);
    expect(errorOf(() => fetchPolicy({ ...flags, tokenFile: file }, {})).message).toMatch(/^the token file \(--token-file\) ".*token" is not owner-only: mode 0644/);
    const bad: Array<[Parameters<typeof fetchPolicy>[0], NodeJS.ProcessEnv, string]> = [
      [{ ...flags, auth: 'bearer' }, {}, '--auth needs a token: --token-file, VNUM_SYNC_TOKEN_FILE or VNUM_SYNC_TOKEN'],
      [{ ...flags, auth: 'digest' }, { VNUM_SYNC_TOKEN: TOKEN }, 'invalid --auth "digest": bearer, basic, or header:<Name> (e.g. header:X-Api-Key)'],
      [{ ...flags, auth: 'header:X Api' }, { VNUM_SYNC_TOKEN: TOKEN }, 'invalid --auth "header:X Api": bearer, basic, or header:<Name> (e.g. header:X-Api-Key)'],
      [{ ...flags, auth: 'basic' }, { VNUM_SYNC_TOKEN: TOKEN }, '--auth basic takes a token of the form user:password'],
      [{ ...flags }, { VNUM_SYNC_TOKEN: `${TOKEN}\r\nX-Evil: 1` }, 'the token holds a line break, a control or a non-ASCII character'],
    ];
    for (const [f, env, message] of bad) {
      const error = errorOf(() => fetchPolicy(f, env));
      expect(error.code).toBe(ErrorCode.InvalidArgument);
      expect(error.message).toBe(message);
      expect(error.message).not.toContain(TOKEN);
    }
  });

  it('refuses a --ca-file that holds no certificate, and bounds --timeout, --max-size, --max-redirects', () => {
    const notPem = join(pki.dir, 'not.pem');
    writeFileSync(notPem, 'hello');
    expect(errorOf(() => fetchPolicy({ ...flags, caFile: notPem }, {})).message).toBe(`--ca-file ${notPem} holds no PEM certificate (-----BEGIN CERTIFICATE-----)`);
    const garbled = join(pki.dir, 'garbled.pem');
    writeFileSync(garbled, '-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n');
    expect(errorOf(() => fetchPolicy({ ...flags, caFile: garbled }, {})).message).toMatch(/^--ca-file .*garbled\.pem: certificate 1 cannot be read/);
    expect(errorOf(() => fetchPolicy({ ...flags, caFile: join(pki.dir, 'none.pem') }, {})).message).toMatch(/^cannot read .*none\.pem: ENOENT/);
    expect(fetchPolicy({ ...flags, caFile: pki.caFile }, {}).ca).toBe(pki.ca);
    for (const timeout of ['0s', '500ms', '11m', '30']) expect(errorOf(() => fetchPolicy({ ...flags, timeout }, {})).code, timeout).toBe(ErrorCode.InvalidArgument);
    for (const maxRedirects of ['-1', '11', 'x', '']) expect(errorOf(() => fetchPolicy({ ...flags, maxRedirects }, {})).code, maxRedirects).toBe(ErrorCode.InvalidArgument);
    expect(parseSize('16MiB', 's')).toBe(16 * 1024 * 1024);
    expect(parseSize('512kib', 's')).toBe(512 * 1024);
    expect(parseSize('1048576', 's')).toBe(1048576);
    for (const size of ['1KB', '2GiB', '100', '1.5MiB', 'MiB', '']) expect(errorOf(() => parseSize(size, '--max-size')).message, size).toMatch(/^invalid --max-size/);
  });
});
