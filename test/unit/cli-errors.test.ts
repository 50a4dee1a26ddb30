/**
 * The error contract of the built CLI (README, "Exit codes and errors"):
 * every failure is one line `vnum: <cause> [VNUM_CODE]` on stderr, exit 1
 * for the user's errors and 2 for faults, nothing on stdout, nothing
 * written; input echoed in a message can never start a second line.
 */
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { startVnum as startCli, useCliDatabase, VNUM_BIN, vnum, type CliResult } from '../support/cli.js';
import { numberPattern } from '../support/leaks.js';

const A = '+447911000001';
const D = '+447911000002';
const IS_ROOT = process.getuid?.() === 0;

const cli = useCliDatabase('vnum-errors-');
const run = cli.run;

/** Exactly one line on stderr, `vnum: … [code]`, no raw control character in it, nothing on stdout. */
function expectOneLine(result: CliResult, code: string, exit: number, message?: RegExp): void {
  expect(result.stderr, result.stderr).toMatch(new RegExp(`^vnum: [^\\n]* \\[${code}\\]\\n$`));
  // eslint-disable-next-line no-control-regex
  expect(result.stderr.slice(0, -1)).not.toMatch(/[\u0000-\u001f\u007f-\u009f\u2028\u2029]/);
  if (message) expect(result.stderr).toMatch(message);
  expect(result.code).toBe(exit);
}

describe('usage errors (commander) are one line with VNUM_USAGE, exit 1', () => {
  it.each([
    [['pool', 'list', '--bogus'], /unknown option '--bogus' \(see "vnum pool list --help"\)/],
    [['frobnicate'], /unknown command 'frobnicate'/],
    [['session', 'create'], /missing required argument 'id' \(see "vnum session create --help"\)/],
    [['session', 'create', 'o1', A, D, '--ttl'], /option '--ttl <duration>' argument missing/],
    [['session', 'show', 'o1', 'extra'], /too many arguments/],
    [[], /missing command: one of pool, session, route, stats, serve, calls, health, api, apikey, webhooks, replica, cluster \(see "vnum --help"\)/],
    [['pool'], /missing command: one of add, import, sync, list, set, retire \(see "vnum pool --help"\)/],
  ])('vnum %j', (args, message) => {
    const result = run(...args);
    expect(result.stdout).toBe('');
    expectOneLine(result, 'VNUM_USAGE', 1, message);
  });

  it('help and --version still print on stdout and exit 0', () => {
    for (const args of [['--help'], ['pool', '--help'], ['help', 'session'], ['--version']]) {
      const result = vnum(args);
      expect(result.code, args.join(' ')).toBe(0);
      expect(result.stderr).toBe('');
      expect(result.stdout.length).toBeGreaterThan(0);
    }
  });
});

describe('input echoed in an error cannot forge a second line or drive the terminal', () => {
  it.each([
    ['a session id with a newline', ['session', 'show', 'ab\nvnum: fake line [VNUM_OK]'], 'VNUM_INVALID_ARGUMENT', /invalid session id "ab\\nvnum: fake line/],
    ['a number with ESC', ['route', '+4479\x1b[2K\x1b[1Gvnum: ok', '+442079460001'], 'VNUM_INVALID_NUMBER', /"\+4479\\x1b\[2K\\x1b\[1Gvnum: ok"/],
    ['a number with CR', ['pool', 'add', '+44207946\rvnum: added'], 'VNUM_INVALID_NUMBER', /\\rvnum: added/],
    ['a Unicode line separator', ['session', 'create', 'o\u2028x', A, D], 'VNUM_INVALID_ARGUMENT', /o\\u2028x/],
    ['a right-to-left override', ['session', 'show', 'ab\u202Edc'], 'VNUM_INVALID_ARGUMENT', /ab\\u202edc/],
    ['an unknown option', ['pool', 'list', '--x\nvnum: fine'], 'VNUM_USAGE', /--x\\nvnum: fine/],
    ['a --since', ['calls', '--since', '1x\nvnum: ok'], 'VNUM_INVALID_ARGUMENT', /"1x\\nvnum: ok"/],
    ['a --db path', ['--db', 'no\nsuch/x.db', 'session', 'list'], 'VNUM_DATABASE_NOT_FOUND', /no\\nsuch/],
  ])('%s', (_what, args, code, shown) => {
    run('pool', 'add', '+442079460001');
    const result = args[0] === '--db' ? vnum(['--db', join(cli.dir, args[1]!), ...args.slice(2)]) : run(...args);
    expectOneLine(result, code, 1, shown);
  });

  it('text for people on stdout too: vnum health echoes --host and --db, one line each', () => {
    // A --host that is no host is refused before anything is probed (a configuration error), escaped.
    expectOneLine(vnum(['--db', cli.db, 'health', '--host', 'x\x1b[2Jy', '--port', '1']), 'VNUM_CONFIGURATION', 1, /invalid --host "x\\x1b\[2Jy"/);
    const result = vnum(['--db', join(cli.dir, 'a\nrouter    ok  fake'), 'health', '--host', '127.0.0.1', '--port', '1']);
    expect(result.code).toBe(1);
    const lines = result.stdout.split('\n');
    expect(lines).toHaveLength(5);
    expect(lines[0]).toMatch(/^router {4}FAIL {2}127\.0\.0\.1:1: /);
    expect(lines[1]).toMatch(/^database {2}FAIL {2}.*a\\nrouter {4}ok {2}fake: no database at /);
    // eslint-disable-next-line no-control-regex
    expect(result.stdout.replace(/\n/g, '')).not.toMatch(/[\u0000-\u001f\u007f-\u009f]/);
  });

  it('a DEL, a C1 control and a backslash are shown escaped too', () => {
    const result = run('session', 'show', 'a\x7fb\x9bc\\n');
    expectOneLine(result, 'VNUM_INVALID_ARGUMENT', 1, /"a\\x7fb\\x9bc\\\\n"/);
  });
});

describe('numbers, limits and routes', () => {
  it('--limit out of range or not plain digits: a user error, never "datatype mismatch"', () => {
    run('pool', 'add', '+442079460001');
    for (const limit of ['99999999999999999999', '10000001', '0', '1e3', '0x10', '-5', ' 7']) {
      expectOneLine(run('session', 'list', '--limit', limit), 'VNUM_INVALID_ARGUMENT', 1, /invalid limit .*a whole number from 1 to 10000000/);
      expectOneLine(run('calls', '--limit', limit), 'VNUM_INVALID_ARGUMENT', 1, /invalid limit/);
    }
    expect(run('session', 'list', '--limit', '10000000').code).toBe(0);
  }, 90_000);

  it('vnum route INVALID: the decision on stdout, one coded line on stderr, exit 1', () => {
    run('pool', 'add', '+442079460001');
    for (const caller of ['anonymous', 'not-a-number', '+1']) {
      const result = run('route', caller, '+442079460001', '--json');
      expect(JSON.parse(result.stdout).status).toBe('INVALID');
      expectOneLine(result, 'VNUM_INVALID_NUMBER', 1);
    }
  });

  it('distinct codes: a requested number not in the pool, one unavailable, a party that is a pool number', () => {
    run('pool', 'add', '+442079460001', '+442079460002');
    run('pool', 'retire', '+442079460002');
    expectOneLine(run('session', 'create', 'o1', A, D, '--first-masked-as', '+442079460009'), 'VNUM_NOT_IN_POOL', 1, /cannot lend \+442079460009: it is not in the pool/);
    expectOneLine(run('session', 'create', 'o1', A, D, '--first-masked-as', '+442079460002'), 'VNUM_NUMBER_UNAVAILABLE', 1, /it is retired/);
    expect(run('session', 'create', 'o1', A, D, '--first-masked-as', '+442079460001').code).toBe(0);
    expectOneLine(run('session', 'create', 'o2', '+447911000003', D, '--first-masked-as', '+442079460001'), 'VNUM_NUMBER_UNAVAILABLE', 1, /already dialled by that party/);
    expectOneLine(run('session', 'create', 'o3', '+442079460001', D), 'VNUM_POOL_CONFLICT', 1, /is a virtual number in the pool/);
    const party = run('pool', 'add', A);
    expectOneLine(party, 'VNUM_POOL_CONFLICT', 1, /^vnum: \+\*{8}0001 is a party's real number/);
    expect(party.stderr).not.toMatch(numberPattern(A));
  });

  it('a reader that stops early (| head) is not an error: no stack trace', () => {
    run('pool', 'add', '+442079460001');
    // `true` has gone before vnum writes: its write meets a closed pipe (EPIPE).
    const piped = spawnSync('sh', ['-c', '"$0" "$1" --db "$2" pool list | true', process.execPath, VNUM_BIN, cli.db], { encoding: 'utf8' });
    expect(piped.stderr).toBe('');
  });
});

describe('faults of the database and of vnum: coded, exit 2, nothing written', () => {
  const startVnum = (args: string[]) => startCli(['--db', cli.db, ...args]).done;

  it('a database locked by another process past the busy timeout: VNUM_DATABASE_BUSY (docs/reliability.md); readers are not blocked by a writer', async () => {
    run('pool', 'add', '+442079460001');
    const holder = new Database(cli.db);
    holder.exec('BEGIN IMMEDIATE');
    try {
      const [add, create, list] = await Promise.all([
        startVnum(['pool', 'add', '+442079460002']),
        startVnum(['session', 'create', 'o1', A, D]),
        startVnum(['pool', 'list', '--json']),
      ]);
      for (const blocked of [add, create]) {
        expect(blocked.stdout).toBe('');
        expectOneLine(blocked, 'VNUM_DATABASE_BUSY', 2, /database .*vnum\.db is busy: another process held it locked .*nothing was written, try again/);
      }
      expect(JSON.parse(list.stdout)).toHaveLength(1);
    } finally {
      holder.exec('ROLLBACK');
    }
    // A lock that blocks readers too.
    holder.pragma('locking_mode = EXCLUSIVE');
    holder.exec('BEGIN EXCLUSIVE');
    try {
      expectOneLine(await startVnum(['session', 'list']), 'VNUM_DATABASE_BUSY', 2);
    } finally {
      holder.exec('ROLLBACK');
      holder.close();
    }
    expect(JSON.parse(run('pool', 'list', '--json').stdout)).toHaveLength(1);
    expect(JSON.parse(run('session', 'list', '--json').stdout)).toEqual([]);
  }, 30_000);

  it('an allocation-invariant failure is an internal fault (VNUM_INTERNAL), not a database error', () => {
    run('pool', 'add', '+442079460001');
    run('session', 'create', 'o1', A, D);
    run('session', 'release', 'o1', '--grace', '0s');
    // Tamper: the bridge rows can no longer pass to a new session, as if allocation had chosen a live pair.
    const raw = new Database(cli.db);
    raw.exec('CREATE TRIGGER frozen BEFORE UPDATE ON bridge BEGIN SELECT RAISE(IGNORE); END');
    raw.close();
    expectOneLine(run('session', 'create', 'o2', A, D), 'VNUM_INTERNAL', 2, /allocation invariant: \+442079460001 is already live for this caller/);
    expect(JSON.parse(run('session', 'list', '--json').stdout).map((s: { id: string }) => s.id)).toEqual(['o1']);
  });

  it('an unexpected SQL failure is VNUM_INTERNAL with SQLite\'s reason, exit 2', () => {
    run('pool', 'add', '+442079460001');
    const raw = new Database(cli.db);
    raw.exec('DROP TABLE call');
    raw.close();
    expectOneLine(run('calls'), 'VNUM_INTERNAL', 2, /internal error on database .*: no such table: call \(SQLITE_ERROR\)/);
  });

  it.skipIf(!IS_ROOT && !process.env.CI)('a full disk: VNUM_DISK_FULL, exit 2, nothing written; works again once there is room', () => {
    // A 2 MiB tmpfs, mounted in a mount namespace of its own (gone when the shell exits), filled up.
    writeFileSync(join(cli.dir, 'dids.csv'), Array.from({ length: 3000 }, (_, i) => `+4420794${String(60000 + i)},GB`).join('\n'));
    const script = `
      set -e
      mnt="$1"; shift
      mkdir -p "$mnt" && mount -t tmpfs -o size=2m vnum-full "$mnt"
      vnum() { "$0" "$VNUM_BIN" --db "$mnt/vnum.db" "$@"; }
      vnum pool add +442079460001 >/dev/null
      free=$(df --output=avail -B1 "$mnt" | tail -1)
      # Room for the -shm (32 KiB) and a few WAL pages, not for 3000 numbers.
      head -c $((free - 49152)) /dev/zero > "$mnt/filler"
      set +e
      vnum pool import "$1" 2>"$mnt/err"; echo "exit=$?"
      cat "$mnt/err"
      set -e
      rm "$mnt/filler"
      vnum pool list --json | grep -c '"number"'
      vnum pool import "$1"
    `;
    const result = spawnSync('unshare', ['--mount', '--propagation', 'private', 'sh', '-c', script, process.execPath, join(cli.dir, 'mnt'), join(cli.dir, 'dids.csv')], {
      encoding: 'utf8',
      env: { ...process.env, VNUM_BIN },
      timeout: 60_000,
    });
    expect(result.status, result.stderr).toBe(0);
    const [exit, error, count, after] = result.stdout.split('\n');
    expect(exit).toBe('exit=2');
    expectOneLine({ code: 2, stdout: '', stderr: `${error}\n` }, 'VNUM_DISK_FULL', 2, /database .*vnum\.db: the disk is full; nothing was written/);
    expect(count).toBe('1');
    expect(after).toBe('pool import: 2999 added, 0 updated, 1 unchanged');
  }, 60_000);
});
