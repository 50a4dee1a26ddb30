/**
 * Bad input of every kind the issue lists, over real HTTP: malformed JSON,
 * wrong types, unknown fields, oversized bodies, every hostile number form
 * the CLI refuses, ids outside the safe alphabet, huge limits and cursors, a
 * CSV upload of garbage, and broken HTTP itself. Each gets a problem+json
 * with a code (checked against the document like every answer), and the
 * database is byte for byte what it was.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { openDb } from '../../src/store/db.js';
import { ApiClient, expectProblem, startApi, type ApiProcess, type ApiResponse } from '../support/api.js';
import { vnum } from '../support/cli.js';
import { numberPattern } from '../support/leaks.js';
import { LINGER } from '../../src/api/linger.js';

const A = '+447911000001';
const D = '+447911000002';

let dir: string;
let db: string;
let api: ApiProcess;
let client: ApiClient;
let before: string;

/** Every row of every table a request could write. */
function snapshot(): string {
  const handle = openDb(db, { mode: 'read' });
  try {
    return JSON.stringify(['session', 'bridge', 'pool_number', 'call', 'meta'].map((t) => handle.prepare(`SELECT * FROM ${t} ORDER BY 1`).all()));
  } finally {
    handle.close();
  }
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'vnum-api-bad-'));
  db = join(dir, 'vnum.db');
  expect(vnum(['--db', db, 'pool', 'add', '+442079460001', '+442079460002']).code).toBe(0);
  expect(vnum(['--db', db, 'session', 'create', 'o1', A, D]).code).toBe(0);
  const key = JSON.parse(vnum(['--db', db, 'apikey', 'create', '--name', 'admin', '--scope', 'admin', '--json']).stdout).key as string;
  api = await startApi({ db });
  client = new ApiClient(api.url, key);
});
afterAll(async () => {
  await api?.stop();
  rmSync(dir, { recursive: true, force: true });
});
beforeEach(() => {
  before = snapshot();
});

/** Refused with this status and code, and nothing written. */
function refused(response: ApiResponse, status: number, code: string): void {
  expectProblem(response, status, code);
  expect((response.body as { detail: string }).detail.length).toBeGreaterThan(5);
  expect(snapshot()).toBe(before);
}

const create = (overrides: Record<string, unknown>) => ({ id: 'o2', parties: [{ number: A }, { number: '+447911000003' }], ...overrides });

describe('malformed JSON', () => {
  it.each([
    ['{', 'unterminated'],
    ['{"id":}', 'a missing value'],
    ["{'id':'o2'}", 'single quotes'],
    ['{"id":"o2",}', 'a trailing comma'],
    ['\u0000', 'a NUL'],
    ['{"id":"o2"}{"id":"o3"}', 'two documents'],
  ])('%j (%s): 400 VNUM_INVALID_JSON', async (raw) => {
    refused(await client.request('POST', '/v1/sessions', { raw, contentType: 'application/json' }), 400, 'VNUM_INVALID_JSON');
  });

  it('an empty body that says it is JSON: 400 VNUM_INVALID_JSON', async () => {
    refused(await client.request('POST', '/v1/sessions', { raw: '', contentType: 'application/json' }), 400, 'VNUM_INVALID_JSON');
  });

  it('prototype poisoning (__proto__, constructor.prototype): 400, never merged into anything', async () => {
    refused(await client.request('POST', '/v1/sessions', { raw: '{"__proto__":{"admin":true},"id":"o2"}', contentType: 'application/json' }), 400, 'VNUM_INVALID_JSON');
    refused(
      await client.request('POST', '/v1/sessions', { raw: '{"constructor":{"prototype":{"admin":true}},"id":"o2"}', contentType: 'application/json' }),
      400,
      'VNUM_INVALID_JSON',
    );
  });

  it.each([['[]'], ['null'], ['"o2"'], ['42'], [`${'['.repeat(5000)}${']'.repeat(5000)}`]])(
    'JSON that is not an object (%j): 400 VNUM_INVALID_ARGUMENT',
    async (raw) => {
      refused(await client.request('POST', '/v1/sessions', { raw, contentType: 'application/json' }), 400, 'VNUM_INVALID_ARGUMENT');
    },
  );
});

describe('wrong types and unknown fields: refused, never coerced or ignored', () => {
  it.each([
    ['id as a number', create({ id: 1002 }), '/body/id'],
    ['ttl in seconds', create({ ttl: 7200 }), '/body/ttl'],
    ['a party as a string', create({ parties: [A, D] }), '/body/parties/0'],
    ['a number as a number', create({ parties: [{ number: 447911000001 }, { number: D }] }), '/body/parties/0/number'],
    ['three parties', create({ parties: [{ number: A }, { number: D }, { number: '+447911000004' }] }), '/body/parties'],
    ['one party', create({ parties: [{ number: A }] }), '/body/parties'],
    ['no parties', { id: 'o2' }, '/body/parties'],
    ['null ttl', create({ ttl: null }), '/body/ttl'],
    ['an unknown field', create({ callbackUrl: 'https://example.com' }), '/body/callbackUrl'],
    ['an unknown field in a party', create({ parties: [{ number: A, name: 'Alice' }, { number: D }] }), '/body/parties/0/name'],
    ['a policy the caller may not set', create({ allowedNumberTypes: 'default,premium-rate' }), '/body/allowedNumberTypes'],
  ])('%s: 400 VNUM_INVALID_ARGUMENT naming %s', async (_what, body, pointer) => {
    const response = await client.post('/v1/sessions', body);
    refused(response, 400, 'VNUM_INVALID_ARGUMENT');
    expect((response.body as any).errors.map((e: any) => e.pointer)).toContain(pointer);
  });

  it('booleans are not coerced from strings, in a release or a pool add', async () => {
    refused(await client.post('/v1/sessions/o1/release', { hangup: 'true' }), 400, 'VNUM_INVALID_ARGUMENT');
    refused(await client.post('/v1/sessions/o1/release', { grace: '0s', force: true }), 400, 'VNUM_INVALID_ARGUMENT');
    refused(await client.post('/v1/pool', { numbers: ['+442079460009'], reserved: 'yes' }), 400, 'VNUM_INVALID_ARGUMENT');
    refused(await client.post('/v1/pool', { numbers: '+442079460009' }), 400, 'VNUM_INVALID_ARGUMENT');
    refused(await client.post('/v1/pool', { numbers: [] }), 400, 'VNUM_INVALID_ARGUMENT');
  });

  it('unknown query parameters, a body where none is taken, a method or path that does not exist', async () => {
    refused(await client.get('/v1/sessions', { query: { stat: 'active' } }), 400, 'VNUM_INVALID_ARGUMENT');
    refused(await client.post('/v1/pool/+442079460001/retire', { force: true }), 400, 'VNUM_INVALID_ARGUMENT');
    refused(await client.request('DELETE', '/v1/sessions/o1'), 404, 'VNUM_NOT_FOUND');
    refused(await client.request('PUT', '/v1/sessions'), 404, 'VNUM_NOT_FOUND');
    refused(await client.get('/v1/session'), 404, 'VNUM_NOT_FOUND');
    refused(await client.get('/v2/sessions'), 404, 'VNUM_NOT_FOUND');
  });

  it('durations outside the CLI\'s bounds or syntax: 400 VNUM_INVALID_ARGUMENT', async () => {
    for (const ttl of ['0s', '366d', '2h30m', '1.5h', '-1h', '99999999999d']) refused(await client.post('/v1/sessions', create({ ttl })), 400, 'VNUM_INVALID_ARGUMENT');
    for (const grace of ['31d', 'soon']) refused(await client.post('/v1/sessions/o1/release', { grace }), 400, 'VNUM_INVALID_ARGUMENT');
    refused(await client.post('/v1/sessions/o1/release', { hangup: true, wait: '61s' }), 400, 'VNUM_INVALID_ARGUMENT');
    refused(await client.get('/v1/calls', { query: { since: '2026-02-30' } }), 400, 'VNUM_INVALID_ARGUMENT');
  });
});

describe('content types and sizes', () => {
  it('a body larger than the operation takes: 413, JSON over 64 KiB and CSV over 4 MiB', async () => {
    const big = JSON.stringify(create({ padding: 'x'.repeat(70 * 1024) }));
    refused(await client.request('POST', '/v1/sessions', { raw: big, contentType: 'application/json' }), 413, 'VNUM_BODY_TOO_LARGE');
    const csv = `number\n${'+442079460009\n'.repeat(Math.ceil((4 * 1024 * 1024) / 14) + 10)}`;
    // Several times: a connection closed while the client still sends loses the answer to EPIPE now and then (src/api/linger.ts).
    for (let i = 0; i < 5; i++) refused(await client.request('POST', '/v1/pool/import', { raw: csv, contentType: 'text/csv' }), 413, 'VNUM_BODY_TOO_LARGE');
  });

  it('after a 413 the rest of the body is read and dropped: the same connection answers the next request', async () => {
    const body = Buffer.alloc(5 * 1024 * 1024, 'x');
    const head = `POST /v1/pool/import HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${client.key}\r\nContent-Type: text/csv\r\nContent-Length: ${body.length}\r\n\r\n`;
    const next = 'GET /v1/ready HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n';
    const answer = await new Promise<string>((resolve, reject) => {
      const socket = net.connect(api.port, '127.0.0.1', () => {
        socket.write(head);
        socket.write(body);
        socket.write(next);
      });
      let text = '';
      socket.setEncoding('utf8').on('data', (chunk: string) => (text += chunk));
      socket.on('close', () => resolve(text));
      socket.on('error', reject);
      socket.setTimeout(10_000, () => socket.destroy(new Error(`no end; so far: ${text.slice(0, 200)}`)));
    });
    const answers = answer.split(/(?=HTTP\/1\.1 )/);
    expect(answers.map((a) => a.split('\r\n')[0])).toEqual(['HTTP/1.1 413 Payload Too Large', 'HTTP/1.1 200 OK']);
    expect(answers[0]).not.toMatch(/^connection: close/im);
  });

  it(`a client that goes on sending past ${LINGER.bytes / 1024 / 1024} MiB after its 413 is cut off`, async () => {
    const head = `POST /v1/pool/import HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${client.key}\r\nContent-Type: text/csv\r\nContent-Length: ${1024 * 1024 * 1024}\r\n\r\n`;
    const outcome = await new Promise<{ text: string; sent: number }>((resolve) => {
      let sent = 0;
      let text = '';
      const chunk = Buffer.alloc(1024 * 1024, 'x');
      const socket = net.connect(api.port, '127.0.0.1', () => {
        socket.write(head);
        const more = (): void => {
          while (!socket.destroyed && sent < 200 * 1024 * 1024) {
            sent += chunk.length;
            if (!socket.write(chunk)) return void socket.once('drain', more);
          }
        };
        more();
      });
      socket.setEncoding('utf8').on('data', (c: string) => (text += c));
      socket.on('error', () => undefined);
      socket.on('close', () => resolve({ text, sent }));
      socket.setTimeout(20_000, () => socket.destroy());
    });
    expect(outcome.text).toMatch(/^HTTP\/1\.1 413 Payload Too Large\r\n/);
    // Cut well before the gigabyte it announced, or the 200 MiB this client would send.
    expect(outcome.sent).toBeLessThan(200 * 1024 * 1024);
  });

  it('a Content-Type the operation does not take: 415', async () => {
    refused(await client.request('POST', '/v1/sessions', { raw: 'id=o2', contentType: 'application/x-www-form-urlencoded' }), 415, 'VNUM_UNSUPPORTED_MEDIA_TYPE');
    refused(await client.request('POST', '/v1/sessions', { raw: JSON.stringify(create({})), contentType: 'text/plain' }), 415, 'VNUM_UNSUPPORTED_MEDIA_TYPE');
    refused(await client.request('POST', '/v1/sessions', { raw: '+447911000001,+447911000003', contentType: 'text/csv' }), 415, 'VNUM_UNSUPPORTED_MEDIA_TYPE');
    refused(await client.request('POST', '/v1/pool/import', { json: { numbers: ['+442079460009'] } }), 415, 'VNUM_UNSUPPORTED_MEDIA_TYPE');
    refused(await client.request('POST', '/v1/sessions', { raw: JSON.stringify(create({})) }), 415, 'VNUM_UNSUPPORTED_MEDIA_TYPE');
  });
});

describe('numbers in every hostile form the CLI refuses: 422, the same codes as the CLI', () => {
  it.each([
    ['+447911000003&PJSIP/evil', 'VNUM_INVALID_NUMBER'],
    ['"+447911000003"', 'VNUM_INVALID_NUMBER'],
    ['tel:+447911000003', 'VNUM_INVALID_NUMBER'],
    ['sip:+447911000003@evil', 'VNUM_INVALID_NUMBER'],
    ['unknown', 'VNUM_INVALID_NUMBER'],
    ['', 'VNUM_INVALID_NUMBER'],
    ['+4479110\u202e00003', 'VNUM_INVALID_NUMBER'],
    ['+\u0664\u0664\u0667\u0669\u0661\u0661\u0660\u0660\u0660\u0660\u0660\u0663', 'VNUM_INVALID_NUMBER'],
    ['+4420794600', 'VNUM_INVALID_NUMBER'],
    ['+447700900123', 'VNUM_INVALID_NUMBER'],
    ['+449098790000', 'VNUM_NUMBER_NOT_ALLOWED'],
    ['+448001111111', 'VNUM_NUMBER_NOT_ALLOWED'],
    ['+80012345678', 'VNUM_NUMBER_NOT_ALLOWED'],
    ['+442079460002', 'VNUM_POOL_CONFLICT'],
  ])('a party %j: %s', async (number, code) => {
    const response = await client.post('/v1/sessions', create({ parties: [{ number: A }, { number }] }));
    refused(response, code === 'VNUM_POOL_CONFLICT' ? 409 : 422, code);
    // and the CLI says the same of it
    const cli = vnum(['--db', db, 'session', 'create', 'o2', A, number], { VNUM_DEFAULT_COUNTRY: 'GB' });
    expect(cli.code).toBe(1);
    expect(cli.stderr).toContain(`[${code}]`);
  });

  it('a number over 64 characters is refused by the schema before it is parsed', async () => {
    refused(await client.post('/v1/sessions', create({ parties: [{ number: A }, { number: `+44${'7'.repeat(100)}` }] })), 400, 'VNUM_INVALID_ARGUMENT');
  });

  it('the two parties the same number, a masked number asked for that is not a pool number, a country that does not exist', async () => {
    refused(await client.post('/v1/sessions', create({ parties: [{ number: A }, { number: '07911000001' }] })), 400, 'VNUM_INVALID_ARGUMENT');
    refused(await client.post('/v1/sessions', create({ parties: [{ number: A, maskedAs: '+442079460099' }, { number: D }] })), 404, 'VNUM_NOT_IN_POOL');
    refused(await client.post('/v1/sessions', create({ country: 'UK', parties: [{ number: A }, { number: '07911000003' }] })), 422, 'VNUM_INVALID_COUNTRY');
    refused(await client.get('/v1/sessions', { query: { party: 'tel:+447911000001' } }), 422, 'VNUM_INVALID_NUMBER');
    refused(await client.get('/v1/route', { query: { caller: '+447911000001&PJSIP/x', dialled: '+442079460001' } }), 422, 'VNUM_INVALID_NUMBER');
    refused(await client.post('/v1/pool', { numbers: [A] }), 409, 'VNUM_POOL_CONFLICT');
    refused(await client.post('/v1/pool', { numbers: ['+442079460009', 'nonsense'] }), 422, 'VNUM_INVALID_NUMBER');
    refused(await client.post('/v1/pool', { numbers: ['+442079460009'], country: 'FR' }), 400, 'VNUM_INVALID_ARGUMENT');
  });
});

describe('ids outside the safe alphabet', () => {
  it.each(['order 1', '../etc/passwd', 'a'.repeat(65), 'ordér', '-x', '', 'o1;DROP TABLE session', 'o\u202e1', 'o\n1'])('a session id %j: 400', async (id) => {
    refused(await client.post('/v1/sessions', create({ id })), 400, 'VNUM_INVALID_ARGUMENT');
  });

  it('in a path: 400, never a lookup', async () => {
    for (const path of ['/v1/sessions/o%201', '/v1/sessions/..%2F..%2Fetc', '/v1/sessions/o%001', `/v1/sessions/${'a'.repeat(65)}`, '/v1/sessions/%E0%A4%A']) {
      refused(await client.get(path), 400, 'VNUM_INVALID_ARGUMENT');
    }
    refused(await client.post(`/v1/sessions/${'a'.repeat(101)}/release`, {}), 400, 'VNUM_INVALID_ARGUMENT');
    refused(await client.get('/v1/calls', { query: { session: 'o 1' } }), 400, 'VNUM_INVALID_ARGUMENT');
  });
});

describe('huge limits and cursors', () => {
  it.each(['0', '-1', '1001', '99999999999999999999', '1e309', 'abc', '1.5', ''])('limit=%j: 400', async (limit) => {
    refused(await client.get('/v1/sessions', { query: { limit } }), 400, 'VNUM_INVALID_ARGUMENT');
  });

  it('a limit given twice, a cursor too long, not base64url, or naming nonsense: 400', async () => {
    refused(await client.get('/v1/sessions?limit=10&limit=20'), 400, 'VNUM_INVALID_ARGUMENT');
    refused(await client.get('/v1/sessions', { query: { cursor: 'A'.repeat(5000) } }), 400, 'VNUM_INVALID_ARGUMENT');
    refused(await client.get('/v1/sessions', { query: { cursor: 'not/base64' } }), 400, 'VNUM_INVALID_ARGUMENT');
    const forged = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url');
    for (const cursor of [forged(['sessions', 1e300]), forged(['sessions', -5]), forged(['sessions', '1']), forged(['calls', 5]), forged({ sessions: 5 }), forged(['pool', 'x'])]) {
      refused(await client.get('/v1/sessions', { query: { cursor } }), 400, 'VNUM_INVALID_ARGUMENT');
    }
    refused(await client.get('/v1/pool', { query: { cursor: forged(['pool', "+44' OR 1=1"]) } }), 400, 'VNUM_INVALID_ARGUMENT');
  });
});

describe('a CSV upload of garbage: 422 VNUM_INVALID_CSV or the row\'s own code, naming the line, nothing imported', () => {
  const upload = (raw: string | Buffer) => client.request('POST', '/v1/pool/import', { raw, contentType: 'text/csv' });

  it.each([
    ['an unterminated quote', 'number\n"+442079460009\n', 'VNUM_INVALID_CSV', /unterminated/],
    ['a header without a number column', 'phone_model,colour\nx,y\n', 'VNUM_INVALID_CSV', /no number column/],
    ['an unknown state', '+442079460009,GB,sold\n', 'VNUM_INVALID_CSV', /unknown state/],
    ['nothing but comments', '# nothing\n\n', 'VNUM_INVALID_CSV', /no numbers/],
    ['an empty upload', '', 'VNUM_INVALID_CSV', /no numbers/],
    ['a bad number after good ones', '+442079460009\n+442079460010\nnot-a-number\n', 'VNUM_INVALID_NUMBER', /line 3/],
    ['a party\'s real number', `+442079460009\n${A}\n`, 'VNUM_POOL_CONFLICT', /line 2/],
  ])('%s', async (_what, raw, code, detail) => {
    const response = await upload(raw);
    refused(response, code === 'VNUM_POOL_CONFLICT' ? 409 : 422, code);
    expect((response.body as any).detail).toMatch(detail);
  });

  it('a party\'s real number offered to the pool (add, import, sync as CSV and JSON): 409, named by where it stands and its last 4 digits, never in full', async () => {
    const offers: Array<[() => Promise<ApiResponse>, RegExp]> = [
      [() => client.post('/v1/pool', { numbers: ['+442079460009', A] }), /^\+\*{8}0001 is a party's real number in a session/],
      [() => client.post('/v1/pool', { numbers: ['07911 000001'], country: 'GB' }), /^\+\*{8}0001 is a party's real number/],
      [() => upload(`number\n+442079460009\n${A}\n`), /^line 3: \+\*{8}0001 is a party's real number/],
      [() => client.request('POST', '/v1/pool/sync', { raw: `number\n+442079460001\n${A}\n`, contentType: 'text/csv' }), /^line 3: \+\*{8}0001 is a party's real number/],
      [() => client.request('POST', '/v1/pool/sync', { json: { numbers: [{ number: '+442079460001' }, { number: A }] } }), /^item numbers\[1\]: \+\*{8}0001 is a party's real number/],
    ];
    for (const [offer, detail] of offers) {
      const response = await offer();
      refused(response, 409, 'VNUM_POOL_CONFLICT');
      expect((response.body as { detail: string }).detail).toMatch(detail);
      expect(JSON.stringify(response.body)).not.toMatch(numberPattern(A));
    }
  });

  it('binary noise', async () => {
    const noise = Buffer.from(Array.from({ length: 4096 }, (_, i) => (i * 7919) % 256));
    const response = await upload(noise);
    expect([422]).toContain(response.status);
    expect(snapshot()).toBe(before);
  });
});

describe('broken HTTP', () => {
  it.each([
    ['a request line of garbage', 'GARBAGE\r\n\r\n'],
    ['a header without a colon', 'GET /v1/ready HTTP/1.1\r\nHost: x\r\nbroken header\r\n\r\n'],
    ['a negative Content-Length', 'POST /v1/sessions HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n'],
  ])('%s: 400 problem+json, and the connection closed', async (_what, raw) => {
    const answer = await new Promise<string>((resolve, reject) => {
      const socket = net.connect(api.port, '127.0.0.1', () => socket.write(raw));
      let text = '';
      socket.setEncoding('utf8').on('data', (chunk: string) => (text += chunk));
      socket.on('close', () => resolve(text));
      socket.on('error', reject);
      socket.setTimeout(5_000, () => socket.destroy(new Error('no answer')));
    });
    expect(answer).toMatch(/^HTTP\/1\.1 400 Bad Request\r\n/);
    expect(answer).toMatch(/Content-Type: application\/problem\+json/);
    expect(JSON.parse(answer.split('\r\n\r\n')[1]!)).toMatchObject({ status: 400, code: 'VNUM_INVALID_ARGUMENT' });
    expect(snapshot()).toBe(before);
  });
});
