/**
 * `vnum pool sync`, the built CLI against a real database file, from files
 * and from a real HTTPS server (a CA made by openssl for this file): the
 * summary (text and JSON), the dry run, the retire limit, the token from a
 * file or the environment and never from the command line, and every
 * refusal exits 1 with one coded line and writes nothing.
 */
import { chmodSync, chownSync, existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { startVnum, vnum, type CliResult } from '../support/cli.js';
import { numberPattern } from '../support/leaks.js';
import { UNPRIVILEGED } from '../support/nobody.js';
import { makeTestPki, send, startProviderServer, type ProviderServer, type TestPki } from '../support/provider-server.js';
import { londonDids } from '../support/store.js';

const TOKEN = 'tok-5d1e8a90c3f2b647';
const PARTY = '+447911000001';
let pki: TestPki;
let provider: ProviderServer;
/** What the provider's export lists now; the server reads it on every request. */
let listed: string[] = [];

beforeAll(async () => {
  pki = makeTestPki();
  provider = await startProviderServer(
    {
      '/dids.json': (q, r, s) =>
        q.headers.authorization === `Bearer ${TOKEN}`
          ? send(200, 'application/json', JSON.stringify({ numbers: listed.map((number) => ({ number, country: 'GB' })) }))(q, r, s)
          : send(401, 'application/json', '{"error":"unauthorized"}')(q, r, s),
      '/dids.csv': (q, r, s) => send(200, 'text/csv', `number,country\n${listed.map((n) => `${n},GB`).join('\n')}\n`)(q, r, s),
      '/login': send(200, 'text/html; charset=utf-8', '<html><body>Please sign in</body></html>'),
    },
    pki.leaf,
  );
}, 60_000);
afterAll(async () => {
  await provider?.close();
  pki?.cleanup();
});

let dir: string;
let db: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'vnum-sync-cli-'));
  db = join(dir, 'vnum.db');
  listed = [];
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

/** The CLI run without blocking this process (the provider's server lives in it). */
async function run(args: string[], env: Record<string, string | undefined> = {}): Promise<CliResult> {
  return startVnum(['--db', db, ...args], env).done;
}
const sync = (args: string[], env: Record<string, string | undefined> = {}) => run(['pool', 'sync', ...args], env);
const https = (path: string) => `${provider.origin}${path}`;
const tokenEnv = () => ({ VNUM_SYNC_TOKEN: TOKEN });
const states = () => Object.fromEntries((JSON.parse(vnum(['--db', db, 'pool', 'list', '--json']).stdout) as Array<{ number: string; state: string }>).map((n) => [n.number, n.state]));

/** One line, the code, nothing on stdout, and the exit code of the code's category (a fetch that failed: 2, try again; the rest: 1). */
function expectRefused(result: CliResult, code: string, message: RegExp): void {
  expect(result.stdout).toBe('');
  expect(result.stderr.trimEnd().split('\n')).toHaveLength(1);
  expect(result.stderr).toMatch(message);
  expect(result.stderr.trimEnd().endsWith(`[${code}]`)).toBe(true);
  expect(result.code).toBe(code === 'VNUM_FETCH_FAILED' ? 2 : 1);
}

describe('vnum pool sync from an https:// URL', () => {
  it('adds what the provider lists, and with --retire-missing retires what it dropped; the summary says what and why', async () => {
    const dids = londonDids(13);
    listed = dids.slice(0, 12);
    const first = await sync([https('/dids.json'), '--ca-file', pki.caFile], tokenEnv());
    expect(first.stderr).toBe('');
    expect(first.code).toBe(0);
    expect(first.stdout.split('\n')[0]).toBe(`pool sync: 12 added, 0 retired, 0 updated, 0 unchanged (12 numbers listed in JSON from ${provider.origin}/dids.json)`);
    expect(first.stdout).toContain(`  ${dids[0]}  added available (new in the export)\n`);
    expect(first.stdout).toContain('  … and 2 more (--json lists them all)\n');
    // The operator reserves one and retires another; the provider drops one of each, and one more, and adds one.
    expect(vnum(['--db', db, 'pool', 'add', dids[1]!, '--reserved']).code).toBe(0);
    expect(vnum(['--db', db, 'pool', 'retire', dids[2]!]).code).toBe(0);
    listed = [dids[0]!, ...dids.slice(4, 12), dids[12]!];
    const second = await sync([https('/dids.json'), '--ca-file', pki.caFile, '--retire-missing'], tokenEnv());
    expect(second.stderr).toBe('');
    expect(second.stdout).toBe(
      `pool sync: 1 added, 1 retired, 0 updated, 9 unchanged (10 numbers listed in JSON from ${provider.origin}/dids.json)\n` +
        `  ${dids[3]}  available -> retired (the provider no longer lists it)\n` +
        `  ${dids[12]}  added available (new in the export)\n` +
        '1 kept the state the operator set:\n' +
        `  ${dids[1]}  reserved (a sync never changes a reserved number; the provider no longer lists it)\n` +
        'retiring 1 of 10 available numbers (10%): at most 1 allowed (--max-retire 10%); 10 available after the sync\n',
    );
    expect(states()).toMatchObject({ [dids[1]!]: 'reserved', [dids[2]!]: 'retired', [dids[3]!]: 'retired', [dids[12]!]: 'available' });
    // Listed again: the number the sync retired comes back, the one the operator retired does not.
    listed = dids;
    const third = JSON.parse((await sync([https('/dids.json'), '--ca-file', pki.caFile, '--retire-missing', '--json'], tokenEnv())).stdout);
    expect(third).toEqual({
      dryRun: false,
      listed: 13,
      added: 0,
      retired: 0,
      updated: 1,
      unchanged: 12,
      changes: [{ number: dids[3], from: { country: 'GB', state: 'retired' }, to: { country: 'GB', state: 'available' }, why: 'listed again; a sync had retired it' }],
      kept: [{ number: dids[2], state: 'retired', reason: 'retired by the operator: a sync never puts it back in service; "vnum pool add" does' }],
      unlisted: [],
      retireLimit: { maxPercent: 10, available: 10, retiring: 0, allowed: 1, availableAfter: 11, exceeded: false },
    });
  });

  it('the token comes from an owner-only file (a systemd credential) or the environment, never the command line', async () => {
    listed = londonDids(2);
    const file = join(dir, 'token');
    writeFileSync(file, `${TOKEN}\n`, { mode: 0o600 });
    expect((await sync([https('/dids.json'), '--ca-file', pki.caFile, '--token-file', file])).code).toBe(0);
    expect((await sync([https('/dids.json'), '--ca-file', pki.caFile], { VNUM_SYNC_TOKEN_FILE: file })).code).toBe(0);
    const noToken = await sync([https('/dids.json'), '--ca-file', pki.caFile]);
    expectRefused(noToken, 'VNUM_FETCH_FAILED', /answered HTTP 401 Unauthorized: check the token/);
    expectRefused(await sync([https('/dids.json'), '--token', TOKEN]), 'VNUM_USAGE', /^vnum: unknown option '--token'/);
    chmodSync(file, 0o644);
    const open = await sync([https('/dids.json'), '--ca-file', pki.caFile, '--token-file', file]);
    expectRefused(open, 'VNUM_INVALID_ARGUMENT', /the token file \(--token-file\) ".*" is not owner-only: mode 0644/);
    for (const r of [noToken, open]) expect(`${r.stdout}${r.stderr}`).not.toContain(TOKEN);
  });

  it('refuses a web page served with 200, an untrusted certificate, and plain http, before opening the database', async () => {
    listed = londonDids(2);
    expectRefused(await sync([https('/login'), '--ca-file', pki.caFile]), 'VNUM_INVALID_EXPORT', /the server sent text\/html, not CSV or JSON \(a web page: an error or login page\?\)/);
    expectRefused(await sync([https('/dids.csv')]), 'VNUM_FETCH_FAILED', /^vnum: TLS: the certificate of 127\.0\.0\.1 is signed not by a CA this system trusts/);
    expectRefused(await sync([`http://127.0.0.1:${provider.port}/dids.csv`]), 'VNUM_INVALID_ARGUMENT', /is plain http:\/\/: refused/);
    expect(existsSync(db)).toBe(false);
  });

  it('judges every setting before any connection', async () => {
    const before = provider.requests.length;
    const bad: Array<[string[], RegExp]> = [
      [['--max-retire', '150%'], /invalid --max-retire "150%": a whole percentage from 0% to 100%/],
      [['--timeout', '0s'], /invalid --timeout "0s": from 1s to 10m/],
      [['--max-size', '10GiB'], /invalid --max-size "10GiB"/],
      [['--max-redirects', '99'], /invalid --max-redirects "99"/],
      [['--auth', 'bearer'], /--auth needs a token/],
      [['--country', 'UK'], /unknown country "UK"/],
    ];
    for (const [flags, message] of bad) expectRefused(await sync([https('/dids.csv'), '--ca-file', pki.caFile, ...flags]), message.source.includes('country') ? 'VNUM_INVALID_COUNTRY' : 'VNUM_INVALID_ARGUMENT', message);
    expectRefused(await sync([https('/dids.csv'), '--format', 'xml']), 'VNUM_USAGE', /argument 'xml' is invalid/);
    expect(provider.requests.length).toBe(before);
  });
});

describe('vnum pool sync from a file', () => {
  const file = (name: string, text: string) => {
    const path = join(dir, name);
    writeFileSync(path, text);
    return path;
  };

  it('--dry-run prints the plan and writes nothing; over the limit it exits 1 with the plan on stdout', async () => {
    const dids = londonDids(10);
    expect((await sync([file('all.csv', dids.join('\n'))])).code).toBe(0);
    const before = vnum(['--db', db, 'pool', 'list', '--json']).stdout;
    const half = file('half.json', JSON.stringify(dids.slice(0, 5)));
    const dry = await sync([half, '--retire-missing', '--dry-run']);
    expect(dry.code).toBe(1);
    expect(dry.stdout.split('\n')[0]).toBe('pool sync --dry-run (nothing written): 0 added, 5 retired, 0 updated, 5 unchanged (5 numbers listed in JSON from ' + half + ')');
    expect(dry.stdout).toContain(
      'retiring 5 of 10 available numbers (50%): over the limit, a sync would be refused: at most 1 allowed (--max-retire 10%); 5 available after the sync\n',
    );
    expect(dry.stderr).toBe(
      'vnum: the export would retire 5 of the 10 available numbers (50%), more than the 1 a sync may retire (--max-retire 10%): a sync would write nothing. If the provider really dropped them, sync with --max-retire 100% [VNUM_RETIRE_LIMIT]\n',
    );
    const dryJson = await sync([half, '--retire-missing', '--dry-run', '--json']);
    expect(JSON.parse(dryJson.stdout)).toMatchObject({
      dryRun: true,
      retired: 5,
      retireLimit: { maxPercent: 10, available: 10, retiring: 5, allowed: 1, availableAfter: 5, exceeded: true },
    });
    expect(dryJson.code).toBe(1);
    // The real thing is refused and writes nothing.
    expectRefused(await sync([half, '--retire-missing']), 'VNUM_RETIRE_LIMIT', /^vnum: the export would retire 5 of the 10 available numbers \(50%\).*nothing was written/);
    expect(vnum(['--db', db, 'pool', 'list', '--json']).stdout).toBe(before);
    // The operator has looked, and says so.
    const forced = await sync([half, '--retire-missing', '--max-retire', '50%']);
    expect(forced.code).toBe(0);
    expect(forced.stdout.split('\n')[0]).toBe(`pool sync: 0 added, 5 retired, 0 updated, 5 unchanged (5 numbers listed in JSON from ${half})`);
  });

  it('without --retire-missing lists what the export omits and changes none of it', async () => {
    const dids = londonDids(3);
    await sync([file('all.csv', dids.join('\n'))]);
    const r = await sync([file('one.csv', dids[0]!)]);
    expect(r.stdout).toBe(
      `pool sync: 0 added, 0 retired, 0 updated, 1 unchanged (1 numbers listed in CSV from ${join(dir, 'one.csv')})\n` +
        '2 not in the export, left as they are (--retire-missing retires them):\n' +
        `  ${dids[1]}  available\n  ${dids[2]}  available\n`,
    );
    expect(Object.values(states())).toEqual(['available', 'available', 'available']);
  });

  it('a dry run creates no database, and reads one it may not write (leaving nothing beside it)', async () => {
    const export1 = file('a.csv', londonDids(2).join('\n'));
    expectRefused(await sync([export1, '--dry-run']), 'VNUM_DATABASE_NOT_FOUND', /database/);
    expect(existsSync(db)).toBe(false);
    expect((await sync([export1])).code).toBe(0);
    if (UNPRIVILEGED.uid !== undefined) chownSync(db, UNPRIVILEGED.uid, UNPRIVILEGED.gid!);
    chmodSync(db, 0o400);
    chmodSync(dir, 0o755);
    const dry = vnum(['--db', db, 'pool', 'sync', export1, '--dry-run', '--json'], {}, UNPRIVILEGED);
    expect(dry.stderr).toBe('');
    expect(JSON.parse(dry.stdout)).toMatchObject({ dryRun: true, unchanged: 2 });
    expectRefused(vnum(['--db', db, 'pool', 'sync', export1], {}, UNPRIVILEGED), 'VNUM_DATABASE_PERMISSIONS', /cannot write database/);
    expect(readdirSync(dir).sort()).toEqual(['a.csv', 'vnum.db']);
  });

  it('refuses a hostile export whole, naming the line or item, and writes nothing', async () => {
    const dids = londonDids(3);
    await sync([file('all.csv', dids.join('\n'))]);
    const before = vnum(['--db', db, 'pool', 'list', '--json']).stdout;
    const cases: Array<[string, string, string, RegExp]> = [
      ['formula.csv', `number\n${dids[0]}\n=HYPERLINK("http://evil","x")\n`, 'VNUM_INVALID_CSV', /^vnum: line 3: a quote inside a field that does not start with one/],
      ['formula2.csv', `number\n${dids[0]}\n=HYPERLINK(A1)\n`, 'VNUM_INVALID_NUMBER', /^vnum: line 3: invalid number "=HYPERLINK\(A1\)": only digits/],
      ['dup.csv', `number,state\n${dids[0]},available\n${dids[0]},retired\n`, 'VNUM_INVALID_ARGUMENT', /^vnum: line 3: \+442079460001 is listed twice with different country or state \(first at line 2\)/],
      ['cut.json', `[{"number":"${dids[0]}"},{"number":"${dids[1]}"`, 'VNUM_INVALID_EXPORT', /^vnum: not valid JSON: it ends early at line 1, column 54 \(a download cut short\?\)/],
      ['esc.json', `["${dids[0]}","\\u001b[2J+44\\n20"]`, 'VNUM_INVALID_NUMBER', /^vnum: item 1: invalid number "\\x1b\[2J\+44\\n20"/],
      ['page.json', `{"data":["${dids[0]}"],"links":{"next":"?page=2"}}`, 'VNUM_INVALID_EXPORT', /one page of several/],
      ['empty.csv', 'number\n', 'VNUM_INVALID_EXPORT', /^vnum: the export lists no numbers: a sync never empties the pool/],
    ];
    for (const [name, text, code, message] of cases) expectRefused(await sync([file(name, text), '--retire-missing', '--max-retire', '100%']), code, message);
    const big = join(dir, 'big.csv');
    writeFileSync(big, `number\n${'+442079460001\n'.repeat(100_000)}`);
    expectRefused(await sync([big, '--max-size', '1MiB']), 'VNUM_INVALID_EXPORT', /big\.csv holds 1400007 bytes, more than --max-size \(1048576 bytes\): refused/);
    expect(vnum(['--db', db, 'pool', 'list', '--json']).stdout).toBe(before);
  });

  it('refuses a party\'s real number in the export, naming its line and its last 4 digits, never the whole number, and writes nothing', async () => {
    const dids = londonDids(3);
    await sync([file('all.csv', dids.join('\n'))]);
    expect(vnum(['--db', db, 'session', 'create', 'o1', PARTY, '+447911000002']).code).toBe(0);
    const before = vnum(['--db', db, 'pool', 'list', '--json']).stdout;
    const party = await sync([file('party.csv', `number\n${dids[0]}\n${PARTY}\n`), '--retire-missing', '--max-retire', '100%']);
    expectRefused(party, 'VNUM_POOL_CONFLICT', /^vnum: line 3: \+\*{8}0001 is a party's real number in a session; it cannot be a virtual number/);
    expect(party.stderr).not.toMatch(numberPattern(PARTY));
    expect(vnum(['--db', db, 'pool', 'list', '--json']).stdout).toBe(before);
  });

  it('pool retire of a number a sync retired makes it the operator\'s', async () => {
    const dids = londonDids(10);
    await sync([file('all.csv', dids.join('\n'))]);
    await sync([file('nine.csv', dids.slice(1).join('\n')), '--retire-missing']);
    const r = vnum(['--db', db, 'pool', 'retire', dids[0]!]);
    expect(r.stdout).toBe(`${dids[0]} was retired by a sync; it is now retired by the operator, and no sync puts it back in service\n`);
    await sync([file('all.csv', dids.join('\n'))]);
    expect(states()[dids[0]!]).toBe('retired');
  });
});
