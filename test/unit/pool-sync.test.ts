/**
 * Provider sync (issue 13): the state rule shared with `pool import`, the
 * plan (a pure function of the pool and the export), the retire limit, and
 * syncPool on a real database file: all or nothing.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ErrorCode } from '../../src/errors.js';
import type { E164 } from '../../src/numbers/normalise.js';
import { importedState, planPoolChange, UNLISTED, type HeldNumber, type Listing } from '../../src/pool/plan.js';
import { addToPool, listPool, poolRevision, retireNumber, validateEntries, type PoolEntryInput, type PoolState } from '../../src/pool/pool.js';
import { parseRetireShare, retireLimit, syncPool, type SyncOptions, type SyncSummary } from '../../src/pool/sync.js';
import { createSession } from '../../src/session/sessions.js';
import { decideRoute } from '../../src/routing/decide.js';
import { storeBridgeLookup } from '../../src/routing/lookup.js';
import { errorOf } from '../support/errors.js';
import { numberPattern } from '../support/leaks.js';
import { londonDids, party, tempDb } from '../support/store.js';

const held = (state: PoolState, retiredBy: HeldNumber['retiredBy'] = state === 'retired' ? 'operator' : null, country = 'GB'): HeldNumber => ({
  country,
  state,
  retiredBy,
});

describe('the state rule a sync shares with pool import (importedState)', () => {
  const listings: Listing[] = [undefined, 'available', 'reserved', 'retired', UNLISTED];
  const table = (writer: 'import' | 'sync') =>
    (
      [
        ['new', undefined],
        ['available', held('available')],
        ['reserved', held('reserved')],
        ['retired by the operator', held('retired', 'operator')],
        ['retired by a sync', held('retired', 'sync')],
      ] as const
    ).map(([, now]) =>
      listings.map((listing) => {
        if (now === undefined && listing === UNLISTED) return '-';
        const r = importedState(now, listing, writer);
        return `${r.state}${r.retiredBy === 'sync' ? '(sync)' : ''}${r.kept ? '*' : ''}`;
      }),
    );

  it('sync: no reserved number changes, no number the operator retired comes back, a number a sync retired comes back when listed', () => {
    // rows: the number today; columns: listed with no state, available, reserved, retired, no longer listed; * kept (reported)
    expect(table('sync')).toEqual([
      ['available', 'available', 'reserved', 'retired(sync)', '-'],
      ['available', 'available', 'reserved', 'retired(sync)', 'retired(sync)'],
      ['reserved', 'reserved*', 'reserved', 'reserved*', 'reserved*'],
      ['retired*', 'retired*', 'retired*', 'retired', 'retired'],
      ['available', 'available', 'reserved', 'retired(sync)', 'retired(sync)'],
    ]);
  });

  it('import: unchanged by the sync work (issue 11, item 7), and a retirement it names becomes the operator\'s', () => {
    expect(table('import')).toEqual([
      ['available', 'available', 'reserved', 'retired', '-'],
      ['available', 'available', 'reserved', 'retired', 'available'],
      ['reserved*', 'available', 'reserved', 'retired', 'reserved'],
      ['retired*', 'retired*', 'retired*', 'retired', 'retired'],
      // pool import never puts any retired number back; the operator's file naming it retired takes it over.
      ['retired(sync)*', 'retired(sync)*', 'retired(sync)*', 'retired', 'retired(sync)'],
    ]);
  });

  it('says why a number kept its state', () => {
    expect(importedState(held('reserved'), UNLISTED, 'sync').kept).toBe('a sync never changes a reserved number; the provider no longer lists it');
    expect(importedState(held('reserved'), 'retired', 'sync').kept).toBe('a sync never changes a reserved number; the export names it retired');
    expect(importedState(held('retired'), 'available', 'sync').kept).toBe('retired by the operator: a sync never puts it back in service; "vnum pool add" does');
    expect(importedState(held('retired', 'sync'), undefined, 'sync')).toEqual({ state: 'available', retiredBy: null, why: 'listed again; a sync had retired it' });
  });
});

describe('the plan (pure)', () => {
  const pool = (entries: Array<[string, HeldNumber]>) => new Map(entries);
  const valid = (entries: PoolEntryInput[]) => validateEntries(entries, undefined);

  it('adds, retires the unlisted with --retire-missing, keeps the reserved, leaves the retired', () => {
    const [a, b, c, d, e] = londonDids(5);
    const now = pool([
      [a!, held('available')],
      [b!, held('available')],
      [c!, held('reserved')],
      [d!, held('retired')],
    ]);
    const plan = planPoolChange(now, valid([{ number: a! }, { number: e! }]), { writer: 'sync', unlisted: 'retire' });
    expect(plan.listed).toBe(2);
    expect(plan.unchanged).toBe(1); // a; c is kept (below), d was retired already: nothing to decide
    expect(plan.changes).toEqual([
      { number: b, from: { country: 'GB', state: 'available' }, to: { country: 'GB', state: 'retired' }, retiredBy: 'sync', why: 'the provider no longer lists it' },
      { number: e, from: null, to: { country: 'GB', state: 'available' }, retiredBy: null, why: 'new in the export' },
    ]);
    expect(plan.kept).toEqual([{ number: c, state: 'reserved', reason: 'a sync never changes a reserved number; the provider no longer lists it' }]);
    expect(plan.unlisted).toEqual([]);
  });

  it('without --retire-missing lists the numbers in service the export omits, and changes none of them', () => {
    const [a, b, c, d] = londonDids(4);
    const now = pool([
      [a!, held('available')],
      [b!, held('available')],
      [c!, held('reserved')],
      [d!, held('retired')],
    ]);
    const plan = planPoolChange(now, valid([{ number: a! }]), { writer: 'sync', unlisted: 'keep' });
    expect(plan.changes).toEqual([]);
    expect(plan.unlisted).toEqual([
      { number: b, state: 'available' },
      { number: c, state: 'reserved' },
    ]);
  });

  it('never changes a number\'s country in a sync, nor by a row that names none; an import row that names one sets it', () => {
    const [a] = londonDids(1);
    // The operator added it as GB; libphonenumber calls +447911… Guernsey's.
    const mobile = '+447911123456';
    const now = pool([
      [a!, held('available', null, 'GB')],
      [mobile, held('available', null, 'GB')],
    ]);
    expect(planPoolChange(now, valid([{ number: mobile }, { number: a!, country: 'GB' }]), { writer: 'sync' }).changes).toEqual([]);
    expect(planPoolChange(now, valid([{ number: mobile, country: 'GG' }]), { writer: 'sync' }).changes).toEqual([]);
    expect(planPoolChange(now, valid([{ number: mobile }]), { writer: 'import' }).changes).toEqual([]);
    expect(planPoolChange(now, valid([{ number: mobile, country: 'GG' }]), { writer: 'import' }).changes).toMatchObject([
      { number: mobile, to: { country: 'GG', state: 'available' }, why: 'country GB -> GG' },
    ]);
  });

  it('counts a number listed twice (the same way) once', () => {
    const [a] = londonDids(1);
    const plan = planPoolChange(new Map(), valid([{ number: a! }, { number: '020 7946 0001', country: 'GB' }, { number: a! }]), { writer: 'sync' });
    expect(plan.listed).toBe(1);
    expect(plan.changes).toHaveLength(1);
  });

  it('the retire limit is a share of the available numbers, and "more than" is strict', () => {
    const dids = londonDids(20);
    const now = pool(dids.map((n, i) => [n, held(i < 10 ? 'available' : 'reserved')]));
    // The export lists all but the first k available numbers.
    const limit = (k: number, max: number) => {
      const plan = planPoolChange(now, valid(dids.slice(k).map((number) => ({ number }))), { writer: 'sync', unlisted: 'retire' });
      return retireLimit(plan, now, max);
    };
    expect(limit(1, 10)).toEqual({ maxPercent: 10, available: 10, retiring: 1, allowed: 1, availableAfter: 9, exceeded: false });
    expect(limit(2, 10)).toEqual({ maxPercent: 10, available: 10, retiring: 2, allowed: 1, availableAfter: 8, exceeded: true });
    expect(limit(5, 50)).toMatchObject({ allowed: 5, exceeded: false });
    expect(limit(6, 50)).toMatchObject({ allowed: 5, exceeded: true });
    expect(limit(10, 100)).toMatchObject({ retiring: 10, availableAfter: 0, exceeded: false });
    expect(limit(1, 0)).toMatchObject({ allowed: 0, exceeded: true });
    expect(limit(0, 0).exceeded).toBe(false);
  });

  it('one number a night is always allowed, so a small pool can follow its carrier; the last available one never is', () => {
    const [a, b, c, d] = londonDids(4);
    const small = pool([
      [a!, held('available')],
      [b!, held('available')],
      [c!, held('available')],
    ]);
    const limitOf = (numbers: string[], max = 10) => retireLimit(planPoolChange(small, valid(numbers.map((number) => ({ number }))), { writer: 'sync', unlisted: 'retire' }), small, max);
    // 1 of 3 is 33%, more than 10%: still allowed, one a night.
    expect(limitOf([a!, b!])).toMatchObject({ retiring: 1, allowed: 1, availableAfter: 2, exceeded: false });
    expect(limitOf([a!])).toMatchObject({ retiring: 2, allowed: 1, exceeded: true });
    // The last available number: never retired under 100%, even within the share; a new one in the export keeps the pool going.
    const one = pool([[a!, held('available')], [b!, held('reserved')]]);
    const plan = (numbers: string[]) => planPoolChange(one, valid(numbers.map((number) => ({ number }))), { writer: 'sync', unlisted: 'retire' });
    expect(retireLimit(plan([b!]), one, 50)).toMatchObject({ retiring: 1, allowed: 1, availableAfter: 0, exceeded: true });
    expect(retireLimit(plan([b!, d!]), one, 50)).toMatchObject({ retiring: 1, availableAfter: 1, exceeded: false });
    expect(retireLimit(plan([b!]), one, 100)).toMatchObject({ availableAfter: 0, exceeded: false });
  });

  it('--max-retire takes a whole percentage', () => {
    expect(parseRetireShare('10%')).toBe(10);
    expect(parseRetireShare('0%')).toBe(0);
    expect(parseRetireShare('100%')).toBe(100);
    for (const bad of ['10', '101%', '-1%', '1.5%', '%', 'ten%', '10 %%']) {
      expect(errorOf(() => parseRetireShare(bad)).code, bad).toBe(ErrorCode.InvalidArgument);
    }
  });
});

describe('syncPool on a database file', () => {
  let store: ReturnType<typeof tempDb>;
  beforeEach(() => {
    store = tempDb();
  });
  afterEach(() => store.cleanup());

  const options = (more: Partial<SyncOptions> = {}): SyncOptions => ({ retireMissing: true, maxRetirePercent: 100, dryRun: false, now: 7, ...more });
  const sync = (numbers: string[], more: Partial<SyncOptions> = {}): SyncSummary =>
    syncPool(
      store.db,
      numbers.map((number) => ({ number })),
      options(more),
    );
  const states = () => Object.fromEntries(listPool(store.db).map((n) => [n.number, n.state]));

  it('follows the export night after night, and syncing the same export again changes nothing', () => {
    const dids = londonDids(6);
    expect(sync(dids.slice(0, 4))).toMatchObject({ listed: 4, added: 4, retired: 0, updated: 0, unchanged: 0 });
    const second = sync(dids.slice(1, 6));
    expect(second).toMatchObject({ listed: 5, added: 2, retired: 1, updated: 0, unchanged: 3 });
    expect(second.changes.map((c) => [c.number, c.from?.state ?? null, c.to.state, c.why])).toEqual([
      [dids[0], 'available', 'retired', 'the provider no longer lists it'],
      [dids[4], null, 'available', 'new in the export'],
      [dids[5], null, 'available', 'new in the export'],
    ]);
    const revision = poolRevision(store.db);
    expect(sync(dids.slice(1, 6))).toMatchObject({ added: 0, retired: 0, updated: 0, unchanged: 5, changes: [], kept: [] });
    expect(poolRevision(store.db)).toBe(revision);
  });

  it('never touches a reserved number, never brings back what the operator retired, brings back what a sync retired', () => {
    const [a, b, c, d] = londonDids(4);
    addToPool(store.db, [{ number: a! }, { number: b!, state: 'reserved' }, { number: c! }, { number: d! }], { now: 1 });
    retireNumber(store.db, c! as E164);
    sync([a!]); // d retired by the sync; b reserved, kept
    expect(states()).toEqual({ [a!]: 'available', [b!]: 'reserved', [c!]: 'retired', [d!]: 'retired' });
    const back = sync([a!, b!, c!, d!]);
    expect(states()).toEqual({ [a!]: 'available', [b!]: 'reserved', [c!]: 'retired', [d!]: 'available' });
    expect(back.kept).toEqual([{ number: c, state: 'retired', reason: 'retired by the operator: a sync never puts it back in service; "vnum pool add" does' }]);
    expect(back.changes).toMatchObject([{ number: d, to: { state: 'available' }, why: 'listed again; a sync had retired it' }]);
    // The operator retiring a number a sync retired makes it the operator's: it stays retired.
    sync([a!]);
    expect(retireNumber(store.db, d! as E164)).toEqual({ changed: false, tookOverFromSync: true });
    sync([a!, d!]);
    expect(states()[d!]).toBe('retired');
    // pool add puts it back, and from then on it is an ordinary available number.
    addToPool(store.db, [{ number: d! }], { now: 9 });
    expect(states()[d!]).toBe('available');
  });

  it('retires a number in use without ending its sessions: they route to their end, new ones get other numbers', () => {
    const [a, b] = londonDids(2);
    sync([a!, b!]);
    const first = party('+447911000001');
    const second = party('+447911000002');
    createSession(store.db, { id: 'order-1', first: { ...first, maskedAs: a as E164 }, second: { ...second, maskedAs: a as E164 }, now: 10 });
    expect(sync([b!], { now: 11 }).retired).toBe(1);
    expect(states()[a!]).toBe('retired');
    const decision = decideRoute({ caller: first.number, dialled: a! }, 13, storeBridgeLookup(store.db));
    expect(decision).toMatchObject({ status: 'BRIDGE', target: second.number, session: 'order-1' });
    const next = createSession(store.db, { id: 'order-2', first: party('+447911000003'), second: party('+447911000004'), now: 12 });
    expect(next.session.parties.map((p) => p.maskedAs)).toEqual([b, b]);
  });

  it('refuses a plan over the retire limit and writes nothing; a dry run reports it and writes nothing either', () => {
    const dids = londonDids(10);
    sync(dids);
    const revision = poolRevision(store.db);
    const before = listPool(store.db);
    const refused = errorOf(() => sync(dids.slice(0, 2), { maxRetirePercent: 10 }));
    expect(refused.code).toBe(ErrorCode.RetireLimit);
    expect(refused.message).toMatch(/^the export would retire 8 of the 10 available numbers \(80%\), more than the 1 a sync may retire \(--max-retire 10%\): nothing was written/);
    expect((refused.details!.summary as SyncSummary).retireLimit).toEqual({ maxPercent: 10, available: 10, retiring: 8, allowed: 1, availableAfter: 2, exceeded: true });
    const dry = sync(dids.slice(0, 2), { maxRetirePercent: 10, dryRun: true });
    expect(dry).toMatchObject({ dryRun: true, retired: 8, retireLimit: { exceeded: true } });
    expect(listPool(store.db)).toEqual(before);
    expect(poolRevision(store.db)).toBe(revision);
    // One of ten is within it.
    expect(sync(dids.slice(1), { maxRetirePercent: 10 }).retired).toBe(1);
  });

  it('never retires the last available number but at --max-retire 100%', () => {
    const [a, b] = londonDids(2);
    addToPool(store.db, [{ number: a! }, { number: b!, state: 'reserved' }], { now: 1 });
    const last = errorOf(() => sync([b!], { maxRetirePercent: 50 }));
    expect(last.code).toBe(ErrorCode.RetireLimit);
    expect(last.message).toMatch(/^the export would retire 1 of the 1 available numbers \(100%\) and leave none available: nothing was written/);
    expect(states()[a!]).toBe('available');
    expect(sync([b!], { maxRetirePercent: 100 }).retired).toBe(1);
  });

  it('a truncated export cannot empty the pool: with the default 10%, an export cut to 95% passes and heals the next night; one cut to half is refused', () => {
    const dids = londonDids(40);
    sync(dids);
    expect(errorOf(() => sync(dids.slice(0, 20), { maxRetirePercent: 10 })).code).toBe(ErrorCode.RetireLimit);
    expect(errorOf(() => sync(dids.slice(0, 35), { maxRetirePercent: 10 })).code).toBe(ErrorCode.RetireLimit);
    expect(sync(dids.slice(0, 38), { maxRetirePercent: 10 }).retired).toBe(2);
    expect(sync(dids, { maxRetirePercent: 10 })).toMatchObject({ retired: 0, updated: 2 });
    expect(Object.values(states()).every((s) => s === 'available')).toBe(true);
  });

  it('an empty export is refused whatever the limit; an invalid entry or a party\'s number anywhere writes nothing', () => {
    const dids = londonDids(3);
    sync(dids);
    const before = listPool(store.db);
    expect(errorOf(() => syncPool(store.db, [], options())).code).toBe(ErrorCode.InvalidExport);
    const bad = errorOf(() => syncPool(store.db, [{ number: dids[0]!, at: 'item 0' }, { number: '+44 20 7946 00x1', at: 'item 1' }], options()));
    expect(bad.message).toMatch(/^item 1: invalid number/);
    createSession(store.db, { id: 'o1', first: party('+447911000001'), second: party('+447911000002'), now: 1 });
    const conflict = errorOf(() => syncPool(store.db, [{ number: '+442079460009', line: 2 }, { number: '+447911000001', line: 3 }], options()));
    expect(conflict.code).toBe(ErrorCode.PoolConflict);
    // by its line and last 4 digits: the full number is not told back to whoever offered it
    expect(conflict.message).toBe("line 3: +********0001 is a party's real number in a session; it cannot be a virtual number");
    expect(conflict.message).not.toMatch(numberPattern('+447911000001'));
    expect(listPool(store.db)).toEqual(before);
  });

});
