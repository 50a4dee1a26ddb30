import { beforeAll, describe, it } from 'vitest';
import { asteriskBlocker, provision } from './asterisk/provision.js';

/**
 * Checks that need something this machine may lack (root, a tool, a kernel
 * feature). `blocker` is null when they can run, else the one-line reason they
 * cannot. Outside CI they are then skipped, their name and a warning saying
 * why; with CI=true they fail with that reason instead, because a CI run that
 * skips proves nothing.
 */
export type Blocker = string | null;

export const mustRun = process.env.CI === 'true';

function cannotRun(blocker: string): Error {
  return new Error(`cannot run here (CI=true forbids skipping): ${blocker}`);
}

function warnSkipped(name: string, blocker: string): void {
  console.warn(`skipped: ${name}: ${blocker} (with CI=true this fails instead)`);
}

export function describeWhen(blocker: Blocker, name: string, body: () => void): void {
  if (blocker === null) {
    describe(name, body);
  } else if (mustRun) {
    describe(name, () => {
      beforeAll(() => {
        throw cannotRun(blocker);
      });
      body();
    });
  } else {
    warnSkipped(name, blocker);
    describe.skip(`${name} (SKIPPED: ${blocker})`, body);
  }
}

export function itWhen(blocker: Blocker, name: string, fn: () => unknown, timeoutMs?: number): void {
  if (blocker === null) {
    it(name, fn, timeoutMs);
  } else if (mustRun) {
    it(name, () => {
      throw cannotRun(blocker);
    });
  } else {
    warnSkipped(name, blocker);
    it.skip(`${name} (SKIPPED: ${blocker})`, fn);
  }
}

/** A suite against the real Asterisk 22 of the e2e harness: provisioned once before its tests. */
export function e2eSuite(name: string, body: () => void): void {
  describeWhen(asteriskBlocker(), name, () => {
    beforeAll(() => provision(), 15 * 60_000);
    body();
  });
}
