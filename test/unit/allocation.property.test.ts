import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { createSession, releaseSession, type Session } from '../../src/session/sessions.js';
import { isVnumError, ErrorCode } from '../../src/errors.js';
import { isLive } from '../../src/session/state.js';
import { addToPool } from '../../src/pool/pool.js';
import { invariantViolations, londonDids, mobile, party, tempDb } from '../support/store.js';

type Op =
  | { kind: 'create'; a: number; b: number; ttl: number | null }
  | { kind: 'release'; pick: number; grace: number }
  | { kind: 'wait'; ms: number };

const op: fc.Arbitrary<Op> = fc.oneof(
  { weight: 5, arbitrary: fc.record({ kind: fc.constant('create' as const), a: fc.nat(7), b: fc.nat(7), ttl: fc.option(fc.integer({ min: 1, max: 50 }), { nil: null }) }) },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('release' as const), pick: fc.nat(), grace: fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 30 })) }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('wait' as const), ms: fc.integer({ min: 1, max: 20 }) }) },
);

describe('allocation over random workloads (property)', () => {
  it('never gives a real number two live bridges on one dialled number, and never refuses while a valid number exists', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 5 }),
        fc.integer({ min: 0, max: 2 }),
        fc.array(op, { minLength: 1, maxLength: 60 }),
        (available, unavailable, ops) => {
          const store = tempDb();
          try {
            const numbers = londonDids(available + unavailable);
            addToPool(
              store.db,
              numbers.map((number, i) => ({ number, state: i < available ? 'available' : i % 2 ? 'reserved' : 'retired' })),
              { now: 0 },
            );
            const availableSet = new Set(numbers.slice(0, available));
            const sessions: Session[] = [];
            let now = 1;
            let nextId = 0;
            // The numbers `caller` dials in live sessions, from our own record of what was created.
            const dialledBy = (caller: string) =>
              sessions
                .filter((s) => isLive(s.endsAt, now))
                .flatMap((s) => s.parties.filter((p, i) => s.parties[1 - i]!.number === caller).map((p) => p.maskedAs));
            for (const step of ops) {
              if (step.kind === 'wait') now += step.ms;
              else if (step.kind === 'release' && sessions.length > 0) {
                const target = sessions[step.pick % sessions.length]!;
                const { session } = releaseSession(store.db, target.id, step.grace, now);
                sessions[sessions.indexOf(target)] = session;
              } else if (step.kind === 'create') {
                if (step.a === step.b) continue;
                const [A, B] = [mobile(step.a), mobile(step.b)];
                const freeFor = (caller: string) => [...availableSet].filter((n) => !(dialledBy(caller) as string[]).includes(n));
                const couldSucceed = freeFor(A).length > 0 && freeFor(B).length > 0;
                try {
                  const { session } = createSession(store.db, {
                    id: `s${nextId++}`,
                    first: party(A),
                    second: party(B),
                    ttlMs: step.ttl ?? undefined,
                    now,
                  });
                  // A is masked as what B dials: it must have been free for B, and the other way round.
                  expect(freeFor(B)).toContain(session.parties[0].maskedAs);
                  expect(freeFor(A)).toContain(session.parties[1].maskedAs);
                  sessions.push(session);
                } catch (e) {
                  if (!isVnumError(e, ErrorCode.PoolExhausted)) throw e;
                  expect(couldSucceed).toBe(false);
                }
              }
              expect(invariantViolations(store.db, now)).toEqual([]);
              for (const caller of new Set(sessions.flatMap((s) => s.parties.map((p) => p.number)))) {
                const dialled = dialledBy(caller);
                expect(new Set(dialled).size).toBe(dialled.length);
              }
            }
          } finally {
            store.cleanup();
          }
        },
      ),
      { numRuns: 150 },
    );
  });
});
