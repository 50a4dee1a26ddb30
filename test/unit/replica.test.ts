/**
 * The replica's pieces that need no PostgreSQL: WAL positions, value
 * conversion, the status-update frame, the generic SQLite applier and the
 * decision to rebuild. The whole pipeline against a real PostgreSQL is in
 * test/cluster/.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ReplicaStore } from '../../src/replica/apply.js';
import { rebuildReason, slotForNode } from '../../src/replica/consumer.js';
import { formatLsn, parseLsn } from '../../src/replica/lsn.js';
import { PgoutputDecoder, type Change } from '../../src/replica/pgoutput.js';
import { statusUpdate, type SystemIdentity } from '../../src/replica/stream.js';
import { converterFor, valueKey } from '../../src/replica/values.js';
import { isVnumError } from '../../src/errors.js';
import { tempDb } from '../support/store.js';

describe('WAL positions', () => {
  it('compares by value whatever the padding, and formats as the server does', () => {
    expect(parseLsn('0/19E2208')).toBe(parseLsn('00000000/019E2208'));
    expect(parseLsn('1/0')).toBeGreaterThan(parseLsn('0/FFFFFFFF'));
    expect(formatLsn(parseLsn('0000000A/00000B0C'))).toBe('A/B0C');
    for (const bad of ['', '0/', '/1', '0-1', '123456789/0', '0/1 ']) expect(() => parseLsn(bad)).toThrow(/not a WAL position/);
  });
});

describe('values', () => {
  it('keeps bigint exact past 2^53, maps booleans to 0/1, bytea to bytes, and NULL to null', () => {
    const int8 = converterFor(20, 't.c');
    expect(int8('1796063765849')).toBe(1_796_063_765_849);
    expect(int8('9007199254740993')).toBe(9_007_199_254_740_993n);
    expect(int8('-9223372036854775808')).toBe(-9_223_372_036_854_775_808n);
    expect(int8(null)).toBeNull();
    expect(converterFor(16, 't.c')('t')).toBe(1);
    expect(converterFor(16, 't.c')('f')).toBe(0);
    expect(converterFor(17, 't.c')('\\x00ff')).toEqual(Buffer.from([0, 255]));
    expect(converterFor(25, 't.c')('+447911000001')).toBe('+447911000001');
    expect(converterFor(3802, 't.c')('{"a": 1}')).toBe('{"a": 1}');
  });

  it('refuses a type the replica cannot hold, naming the column', () => {
    expect(() => converterFor(1184, 'session.created')).toThrow(/column session\.created has PostgreSQL type oid 1184, which the replica cannot hold .*times are bigint ms/);
  });

  it('compares integers by value whether SQLite gave a number or a bigint', () => {
    expect(valueKey(5)).toBe(valueKey(5n));
    expect(valueKey('5')).not.toBe(valueKey(5));
    expect(valueKey(null)).not.toBe(valueKey('null'));
  });
});

/** pgoutput protocol 1 messages, built by hand (PostgreSQL's logical replication message formats). */
const wire = {
  int8: (n: bigint) => { const b = Buffer.alloc(8); b.writeBigInt64BE(n); return b; },
  int32: (n: number) => { const b = Buffer.alloc(4); b.writeInt32BE(n); return b; },
  int16: (n: number) => { const b = Buffer.alloc(2); b.writeInt16BE(n); return b; },
  str: (s: string) => Buffer.concat([Buffer.from(s), Buffer.from([0])]),
  text: (s: string | null) => (s === null ? Buffer.from('n') : Buffer.concat([Buffer.from('t'), wire.int32(Buffer.byteLength(s)), Buffer.from(s)])),
};
const at2000 = (ms: number) => BigInt(Math.round((ms - Date.UTC(2000, 0, 1)) * 1000));

describe('the pgoutput decoder', () => {
  it('gives commit times in ms since 1970, positions as numbers, and rows by column name converted for SQLite', () => {
    const decoder = new PgoutputDecoder();
    const commitMs = Date.UTC(2026, 10, 30, 12, 0, 0, 250);
    const begin = decoder.decode(Buffer.concat([Buffer.from('B'), wire.int8(0x19e21d8n), wire.int8(at2000(commitMs)), wire.int32(996)]));
    expect(begin).toEqual({ kind: 'begin', commitLsn: parseLsn('0/19E21D8'), commitTimeMs: commitMs });
    const relation = Buffer.concat([
      Buffer.from('R'), wire.int32(16384), wire.str('public'), wire.str('meta'), Buffer.from('d'), wire.int16(3),
      Buffer.from([1]), wire.str('key'), wire.int32(25), wire.int32(-1),
      Buffer.from([0]), wire.str('value'), wire.int32(20), wire.int32(-1),
      Buffer.from([0]), wire.str('on'), wire.int32(16), wire.int32(-1),
    ]);
    expect(decoder.decode(relation)).toEqual({ kind: 'relation', table: 'meta' });
    const insert = decoder.decode(Buffer.concat([
      Buffer.from('I'), wire.int32(16384), Buffer.from('N'), wire.int16(3), wire.text('big'), wire.text('9007199254740993'), wire.text('t'),
    ]));
    expect(insert).toEqual({ kind: 'change', change: { kind: 'insert', table: 'meta', row: { key: 'big', value: 9_007_199_254_740_993n, on: 1 } } });
    const update = decoder.decode(Buffer.concat([
      Buffer.from('U'), wire.int32(16384), Buffer.from('N'), wire.int16(3), wire.text('big'), wire.text(null), wire.text('f'),
    ]));
    expect(update).toEqual({ kind: 'change', change: { kind: 'update', table: 'meta', key: { key: 'big' }, row: { key: 'big', value: null, on: 0 } } });
    const commit = decoder.decode(Buffer.concat([Buffer.from('C'), Buffer.from([0]), wire.int8(0x19e21d8n), wire.int8(0x19e2208n), wire.int8(at2000(commitMs))]));
    expect(commit).toEqual({ kind: 'commit', commitLsn: parseLsn('0/19E21D8'), endLsn: parseLsn('0/19E2208'), commitTimeMs: commitMs });
  });

  it('refuses a change to a table whose relation message never came, and a column type it cannot hold', () => {
    const decoder = new PgoutputDecoder();
    expect(() => decoder.decode(Buffer.concat([Buffer.from('I'), wire.int32(1), Buffer.from('N'), wire.int16(0)]))).toThrow(/missing relation/);
    const timestamptz = Buffer.concat([
      Buffer.from('R'), wire.int32(7), wire.str('public'), wire.str('call'), Buffer.from('d'), wire.int16(1),
      Buffer.from([1]), wire.str('at'), wire.int32(1184), wire.int32(-1),
    ]);
    expect(() => decoder.decode(timestamptz)).toThrow(/column call\.at has PostgreSQL type oid 1184/);
  });
});

describe('status update frame', () => {
  it('is 34 bytes: r, the exact position three times, µs since 2000-01-01, the reply flag', () => {
    const frame = statusUpdate(parseLsn('0/10435C18'), Date.UTC(2000, 0, 1, 0, 0, 1), true);
    expect(frame.length).toBe(34);
    expect(frame.toString('latin1', 0, 1)).toBe('r');
    for (const at of [1, 9, 17]) expect(formatLsn(frame.readBigUInt64BE(at))).toBe('0/10435C18');
    expect(frame.readBigInt64BE(25)).toBe(1_000_000n);
    expect(frame.readUInt8(33)).toBe(1);
  });
});

describe('the SQLite applier', () => {
  let store: ReplicaStore;
  let cleanup: () => void;
  const identity = { systemId: '7714', database: 'vnum', slot: 'vnum_a', publication: 'vnum_replica' };
  const session = (sid: number, id: string) => ({
    sid, id, first_party: '+447911000001', first_masked_as: '+442079460001', second_party: '+447911000002',
    second_masked_as: '+442079460002', created_at: 1, expires_at: null, released_at: null, ends_at: null,
  });
  const bridge = (caller: string, sid: number) => ({ caller, dialled: '+442079460001', sid, target: '+447911000009', lent_at: 1, ends_at: 100 });

  beforeEach(() => {
    const t = tempDb();
    cleanup = t.cleanup;
    store = new ReplicaStore(t.db);
    const rebuild = store.beginRebuild(['session', 'bridge', 'meta', 'pool_number']);
    rebuild.insert('meta', { key: 'pool_revision', value: 3 });
    rebuild.finish({ ...identity, tables: ['bridge', 'meta', 'pool_number', 'session'], consistentPoint: parseLsn('0/100'), at: 5 });
  });
  afterEach(() => cleanup());

  const rows = (sql: string): unknown[] => store.db.prepare(sql).all();

  it('applies inserts, updates (also of the key), deletes and truncates by table and column name, with the position', () => {
    store.applyTransaction(
      [
        { kind: 'insert', table: 'session', row: session(1, 's1') },
        { kind: 'insert', table: 'bridge', row: bridge('+447911000002', 1) },
        { kind: 'insert', table: 'bridge', row: bridge('+447911000003', 1) },
      ],
      parseLsn('0/200'),
      1_700_000_000_000.7,
    );
    store.applyTransaction(
      [
        { kind: 'update', table: 'bridge', key: { caller: '+447911000002', dialled: '+442079460001' }, row: { ...bridge('+447911000004', 1), ends_at: null } },
        // An unchanged TOAST column is not sent: it keeps its value.
        { kind: 'update', table: 'session', key: { sid: 1 }, row: { sid: 1, ends_at: 50 } },
        { kind: 'delete', table: 'bridge', key: { caller: '+447911000003', dialled: '+442079460001' } },
        { kind: 'truncate', tables: ['pool_number'] },
      ],
      parseLsn('0/300'),
      1_700_000_000_001,
    );
    expect(rows('SELECT caller, ends_at FROM bridge')).toEqual([{ caller: '+447911000004', ends_at: null }]);
    expect(rows('SELECT id, first_party, ends_at FROM session')).toEqual([{ id: 's1', first_party: '+447911000001', ends_at: 50 }]);
    expect(store.state()).toMatchObject({ appliedLsn: parseLsn('0/300'), appliedCommitAt: 1_700_000_000_001, builtLsn: parseLsn('0/100') });
    store.advance(parseLsn('0/400'));
    expect(store.state()).toMatchObject({ appliedLsn: parseLsn('0/400'), appliedCommitAt: 1_700_000_000_001 });
  });

  it('applies a transaction whole or not at all; drift (a missing row, a row twice) stops it without naming values', () => {
    store.applyTransaction([{ kind: 'insert', table: 'session', row: session(1, 's1') }], parseLsn('0/200'), 1);
    const broken: Change[][] = [
      [{ kind: 'insert', table: 'session', row: session(2, 's2') }, { kind: 'insert', table: 'session', row: session(1, 's1') }],
      [{ kind: 'insert', table: 'session', row: session(2, 's2') }, { kind: 'update', table: 'bridge', key: { caller: '+447911000077', dialled: '+442079460001' }, row: { ends_at: 1 } }],
      [{ kind: 'insert', table: 'session', row: session(2, 's2') }, { kind: 'delete', table: 'session', key: { sid: 99 } }],
    ];
    for (const changes of broken) {
      let error: unknown;
      try {
        store.applyTransaction(changes, parseLsn('0/300'), 2);
      } catch (e) {
        error = e;
      }
      expect(error).toBeInstanceOf(Error);
      expect(String(error)).not.toMatch(/447911/);
      expect(rows('SELECT id FROM session')).toEqual([{ id: 's1' }]);
      expect(formatLsn(store.state()!.appliedLsn)).toBe('0/200');
    }
  });

  it('names what the authority publishes and this schema lacks', () => {
    expect(store.schemaGaps(new Map([['session', ['sid', 'id']], ['bridge', ['caller']]]))).toEqual([]);
    expect(store.schemaGaps(new Map([['session', ['sid', 'note']], ['tag', ['sid']]]))).toEqual(['session.note', 'table tag']);
    let error: unknown;
    try {
      store.applyTransaction([{ kind: 'insert', table: 'session', row: { ...session(3, 's3'), note: 'x' } }], parseLsn('0/500'), 3);
    } catch (e) {
      error = e;
    }
    expect(isVnumError(error)).toBe(true);
    expect((error as Error).message).toMatch(/PostgreSQL publishes session\.note, which this node's SQLite schema lacks: .*upgrade vnum on this node/);
  });

  it('a rebuild replaces the replicated tables in one transaction; abandoned, the old replica stays', () => {
    store.applyTransaction([{ kind: 'insert', table: 'session', row: session(1, 's1') }], parseLsn('0/200'), 1);
    const abandoned = store.beginRebuild(['session']);
    abandoned.insert('session', session(7, 's7'));
    abandoned.abandon();
    expect(rows('SELECT id FROM session')).toEqual([{ id: 's1' }]);
    expect(formatLsn(store.state()!.appliedLsn)).toBe('0/200');

    const rebuild = store.beginRebuild(['session']);
    rebuild.insert('session', session(7, 's7'));
    rebuild.finish({ ...identity, tables: ['session'], consistentPoint: parseLsn('0/900'), at: 9 });
    expect(rows('SELECT id FROM session')).toEqual([{ id: 's7' }]);
    expect(store.state()).toMatchObject({ appliedLsn: parseLsn('0/900'), builtLsn: parseLsn('0/900'), builtAt: 9, appliedCommitAt: null, tables: ['session'] });
  });
});

describe('when a node rebuilds', () => {
  const identity: SystemIdentity = { systemId: '7714', timeline: 1, walPosition: parseLsn('0/900'), database: 'vnum' };
  const state = {
    systemId: '7714', database: 'vnum', slot: 'vnum_a', publication: 'vnum_replica', tables: ['bridge', 'session'],
    builtLsn: parseLsn('0/100'), builtAt: 1, appliedLsn: parseLsn('0/500'), appliedCommitAt: null,
  };
  const slot = { confirmedFlush: parseLsn('0/400'), walStatus: 'reserved', activePid: null, plugin: 'pgoutput' };
  const expected = { slot: 'vnum_a', publication: 'vnum_replica', tables: ['bridge', 'session'] };

  it('follows the slot when the file and the slot agree', () => {
    expect(rebuildReason(state, identity, slot, expected)).toBeUndefined();
    expect(rebuildReason(state, identity, { ...slot, confirmedFlush: state.appliedLsn }, expected)).toBeUndefined();
  });

  it('rebuilds a new file, one from another cluster, a missing or invalidated slot, a slot ahead of the file, a table that joined', () => {
    expect(rebuildReason(undefined, identity, slot, expected)).toBe('the replica has never been built');
    expect(rebuildReason(state, { ...identity, systemId: '1' }, slot, expected)).toMatch(/another PostgreSQL/);
    expect(rebuildReason(state, { ...identity, database: 'other' }, slot, expected)).toMatch(/another PostgreSQL/);
    expect(rebuildReason(state, identity, undefined, expected)).toBe('slot vnum_a does not exist');
    expect(rebuildReason(state, identity, { ...slot, walStatus: 'lost' }, expected)).toMatch(/invalidated/);
    expect(rebuildReason(state, identity, { ...slot, confirmedFlush: parseLsn('0/501') }, expected)).toMatch(/beyond this file's 0\/500/);
    expect(rebuildReason(state, identity, slot, { ...expected, tables: ['bridge', 'pin', 'session'] })).toMatch(/publication now has pin/);
  });

  it('names slots after nodes, refusing names PostgreSQL would not take', () => {
    expect(slotForNode('pbx_1')).toBe('vnum_pbx_1');
    for (const bad of ['', 'PBX', 'a-b', 'x'.repeat(59), 'a"; DROP']) expect(() => slotForNode(bad)).toThrow(/invalid node name/);
  });
});
