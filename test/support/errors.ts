import { VnumError } from '../../src/errors.js';

/** The VnumError `fn` throws; fails the test if it throws nothing or something else. */
export function errorOf(fn: () => unknown): VnumError {
  try {
    fn();
  } catch (e) {
    if (e instanceof VnumError) return e;
    throw e;
  }
  throw new Error('expected a VnumError');
}
