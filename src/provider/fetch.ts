/**
 * Fetch a provider's export over HTTPS, as a careful client would: the
 * certificate verified (the system's CAs, or only the provider's own with
 * --ca-file), no plain http unless allowed (and never with a token), a
 * token sent to the export's own origin only (a redirect elsewhere gets no
 * token), a bounded number of redirects, one deadline for the whole
 * exchange, a size limit enforced while reading, and a body that must arrive
 * whole. Every failure is VNUM_FETCH_FAILED naming its cause (DNS,
 * connection, TLS, HTTP status, redirect, timeout); a body that is too big
 * is VNUM_INVALID_EXPORT. The URL is shown without its query (it may carry
 * a signature).
 */
import http, { type ClientRequest, type IncomingMessage } from 'node:http';
import https from 'node:https';
import { formatDuration } from '../duration.js';
import { ErrorCode, VnumError } from '../errors.js';

export interface FetchPolicy {
  /** Plain http:// is allowed (never with a token). */
  allowHttp: boolean;
  /** PEM: trust only these CAs (a provider's private CA) instead of the system's. */
  ca?: string | undefined;
  /** A header carrying the token: sent to the URL's own origin only. */
  auth?: { header: string; value: string } | undefined;
  /** The whole exchange, redirects and body included. */
  timeoutMs: number;
  maxBytes: number;
  maxRedirects: number;
  userAgent: string;
}

export interface Fetched {
  body: Buffer;
  /** The Content-Type the server declared, if any. */
  contentType: string | undefined;
  /** Where the export came from at last (after redirects). */
  url: URL;
}

/** The URL as messages show it: no user, no query (a signature or a key may ride there). */
export function shownUrl(url: URL): string {
  return `${url.origin}${url.pathname}${url.search ? '?…' : ''}`;
}

function failed(message: string): VnumError {
  return new VnumError(ErrorCode.FetchFailed, message);
}

/** A URL vnum may fetch under the policy, judged before any connection (and for each redirect, `from` being the URL that sent it). */
export function checkFetchUrl(url: URL, policy: Pick<FetchPolicy, 'allowHttp' | 'auth'>, from?: URL): void {
  const what = from === undefined ? shownUrl(url) : `${shownUrl(from)} redirected to ${shownUrl(url)}, which`;
  if (url.username !== '' || url.password !== '') {
    throw new VnumError(ErrorCode.InvalidArgument, `${what} carries credentials in the URL (visible in ps and logs): give the token with --token-file or VNUM_SYNC_TOKEN_FILE`);
  }
  if (url.protocol === 'https:') return;
  if (url.protocol !== 'http:') {
    throw new VnumError(ErrorCode.InvalidArgument, `${what} is not an https:// URL (${url.protocol.slice(0, 20)} is not fetched)`);
  }
  if (!policy.allowHttp) {
    const message = `${what} is plain http://: refused (the export could be altered on the way); use https://, or --allow-http for a server on a network you trust`;
    throw from === undefined ? new VnumError(ErrorCode.InvalidArgument, message) : failed(message);
  }
  if (policy.auth !== undefined && from === undefined) {
    throw new VnumError(ErrorCode.InvalidArgument, `${what} is plain http://: a token is never sent in clear; use https://`);
  }
}

const TRUST = new Set(['DEPTH_ZERO_SELF_SIGNED_CERT', 'SELF_SIGNED_CERT_IN_CHAIN', 'UNABLE_TO_VERIFY_LEAF_SIGNATURE', 'UNABLE_TO_GET_ISSUER_CERT', 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY', 'CERT_UNTRUSTED', 'CERT_SIGNATURE_FAILURE']);
const DNS = new Set(['ENOTFOUND', 'EAI_AGAIN', 'EAI_FAIL', 'EAI_NONAME', 'EAI_NODATA']);

/** A connection-level error as a cause an operator can act on. */
function networkError(error: NodeJS.ErrnoException, url: URL, policy: FetchPolicy): VnumError {
  const code = error.code ?? '';
  const host = url.hostname;
  const port = url.port || (url.protocol === 'https:' ? '443' : '80');
  if (DNS.has(code)) return failed(`cannot resolve ${host} (DNS: ${code})`);
  if (code === 'ECONNREFUSED') return failed(`${host}:${port} refused the connection`);
  if (code === 'ECONNRESET' || code === 'EPIPE') return failed(`${host}:${port} closed the connection (${code})`);
  if (['ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'EADDRNOTAVAIL'].includes(code)) return failed(`cannot reach ${host}:${port} (${code})`);
  if (TRUST.has(code)) {
    const fix = policy.ca !== undefined ? 'not by a CA in --ca-file' : "not by a CA this system trusts; for a provider's private CA, give it with --ca-file";
    return failed(`TLS: the certificate of ${host} is signed ${fix} (${code})`);
  }
  if (code === 'CERT_HAS_EXPIRED') return failed(`TLS: the certificate of ${host} has expired (${code})`);
  if (code === 'CERT_NOT_YET_VALID') return failed(`TLS: the certificate of ${host} is not valid yet (${code})`);
  if (code === 'ERR_TLS_CERT_ALTNAME_INVALID') return failed(`TLS: the certificate of ${host} is for other names (${code})`);
  if (code === 'ERR_SSL_WRONG_VERSION_NUMBER' || code === 'EPROTO' || code.startsWith('ERR_SSL_') || code.startsWith('ERR_TLS_')) {
    return failed(`TLS handshake with ${host}:${port} failed (${code}): is it an https server?`);
  }
  return failed(`cannot fetch ${shownUrl(url)}: ${error.message} (${code || 'no code'})`);
}

const REDIRECTS = new Set([301, 302, 303, 307, 308]);

export function fetchExport(start: URL, policy: FetchPolicy): Promise<Fetched> {
  checkFetchUrl(start, policy);
  return new Promise<Fetched>((resolve, reject) => {
    let request: ClientRequest | undefined;
    let settled = false;
    const finish = (error: VnumError | null, fetched?: Fetched) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      request?.destroy();
      if (error) reject(error);
      else resolve(fetched!);
    };
    const timer = setTimeout(
      () => finish(failed(`no complete answer from ${shownUrl(start)} within ${formatDuration(policy.timeoutMs)} (--timeout)`)),
      policy.timeoutMs,
    );

    const answer = (url: URL, redirects: number, response: IncomingMessage) => {
      const status = response.statusCode ?? 0;
      if (REDIRECTS.has(status)) {
        response.resume();
        const location = response.headers.location;
        if (location === undefined) return finish(failed(`${shownUrl(url)} answered HTTP ${status} without a Location`));
        let next: URL;
        try {
          next = new URL(location, url);
        } catch {
          return finish(failed(`${shownUrl(url)} redirected to an invalid URL`));
        }
        if (redirects >= policy.maxRedirects) {
          return finish(failed(`${shownUrl(start)}: more than ${policy.maxRedirects} redirects (--max-redirects), the last to ${shownUrl(next)}`));
        }
        try {
          checkFetchUrl(next, policy, url);
        } catch (e) {
          return finish(new VnumError(ErrorCode.FetchFailed, (e as Error).message));
        }
        request?.destroy();
        return get(next, redirects + 1);
      }
      if (status !== 200 && status !== 203) {
        const origin = url.origin === start.origin ? '' : ` (redirected from ${start.host}; the token goes to ${start.host} only)`;
        const hint = status === 401 || status === 403 ? ': check the token (--token-file, VNUM_SYNC_TOKEN_FILE) and --auth' : '';
        const text = (response.statusMessage ?? '').replace(/[^\x20-\x7e]/g, '').slice(0, 60);
        return finish(failed(`${shownUrl(url)} answered HTTP ${status}${text ? ` ${text}` : ''}${origin}${hint}`));
      }
      const encoding = (response.headers['content-encoding'] ?? 'identity').toLowerCase();
      if (encoding !== 'identity') {
        return finish(failed(`${shownUrl(url)} sent the export ${encoding.slice(0, 20)}-encoded although asked for identity`));
      }
      const declared = Number(response.headers['content-length'] ?? NaN);
      if (declared > policy.maxBytes) {
        return finish(tooLarge(url, `announces ${declared} bytes`, policy.maxBytes));
      }
      const chunks: Buffer[] = [];
      let size = 0;
      response.on('data', (chunk: Buffer) => {
        size += chunk.length;
        if (size > policy.maxBytes) finish(tooLarge(url, `sent more than ${policy.maxBytes} bytes`, policy.maxBytes));
        else chunks.push(chunk);
      });
      response.on('end', () => {
        if (response.complete) finish(null, { body: Buffer.concat(chunks), contentType: response.headers['content-type'], url });
      });
      // A connection closed before the announced length (or the last chunk): never read a cut-short export as whole.
      response.on('close', () => {
        if (!response.complete) {
          const of = Number.isFinite(declared) ? ` of ${declared}` : '';
          finish(failed(`${shownUrl(url)} closed the connection after ${size}${of} bytes: the export arrived cut short`));
        }
      });
      response.on('error', () => undefined); // 'close' reports it
    };

    const get = (url: URL, redirects: number) => {
      const headers: Record<string, string> = {
        accept: 'application/json, text/csv;q=0.9, text/plain;q=0.5',
        'accept-encoding': 'identity',
        'user-agent': policy.userAgent,
      };
      if (policy.auth !== undefined && url.origin === start.origin) headers[policy.auth.header] = policy.auth.value;
      const options: https.RequestOptions = { method: 'GET', headers, agent: false, ...(policy.ca !== undefined ? { ca: policy.ca } : {}), minVersion: 'TLSv1.2' };
      const client = url.protocol === 'https:' ? https : http;
      try {
        request = client.request(url, options, (response) => answer(url, redirects, response));
      } catch (e) {
        return finish(failed(`cannot fetch ${shownUrl(url)}: ${(e as Error).message}`));
      }
      const sent = request;
      sent.on('error', (error: NodeJS.ErrnoException) => {
        if (sent === request) finish(networkError(error, url, policy));
      });
      sent.end();
    };
    get(start, 0);
  });
}

function tooLarge(url: URL, what: string, max: number): VnumError {
  return new VnumError(ErrorCode.InvalidExport, `${shownUrl(url)} ${what}, more than --max-size (${max} bytes): refused`);
}
