/**
 * One error family: every error vnum raises on purpose has a stable code and
 * one category, and the CLI's exit codes follow from the category alone, as
 * the README's table says.
 */
import { describe, expect, it } from 'vitest';
import { AgiError } from '../../agi/errors.js';
import { AmiError, AmiHeaderError } from '../../src/ami/errors.js';
import { checkedAction } from '../../src/ami/action.js';
import { EXIT_INTERNAL_ERROR, EXIT_USER_ERROR, exitCodeOf } from '../../src/cli/failure.js';
import { CodedError, errorCategory, ErrorCode, VnumError } from '../../src/errors.js';
import { readRepo } from '../support/repo.js';

describe('the error family', () => {
  it('VnumError, AgiError, AmiError and AmiHeaderError share one base, and keep their names and codes', () => {
    const errors = [new VnumError(ErrorCode.PoolExhausted, 'x'), new AgiError('AGI_CLOSED', 'x'), new AmiError('AMI_TIMEOUT', 'x'), new AmiHeaderError('x')];
    for (const error of errors) expect(error).toBeInstanceOf(CodedError);
    expect(errors.map((e) => [e.name, e.code])).toEqual([
      ['VnumError', 'VNUM_POOL_EXHAUSTED'],
      ['AgiError', 'AGI_CLOSED'],
      ['AmiError', 'AMI_TIMEOUT'],
      ['AmiHeaderError', 'AMI_BAD_HEADER'],
    ]);
    expect(new AmiHeaderError('x')).toBeInstanceOf(AmiError);
    let thrown: unknown;
    try {
      checkedAction('Hangup', { Channel: 'a\r\nAction: Originate' }, 'id');
    } catch (e) {
      thrown = e;
    }
    expect(thrown).toBeInstanceOf(AmiHeaderError);
  });

  it('anything outside the family is internal: exit 2', () => {
    expect(errorCategory(new Error('boom'))).toBe('internal');
    expect(errorCategory('boom')).toBe('internal');
    expect(exitCodeOf(new TypeError('x'))).toBe(EXIT_INTERNAL_ERROR);
  });

  it('each VNUM_ code exits as the README\'s table says, and the table lists exactly the codes there are', () => {
    const readme = readRepo('README.md');
    const table = readme.slice(readme.indexOf('### Exit codes and errors'), readme.indexOf('### Retries'));
    const rows = [...table.matchAll(/^\| `(VNUM_[A-Z_]+)` \| (\d) \|/gm)].map((m) => [m[1]!, Number(m[2])] as const);
    expect(rows.map(([code]) => code).sort()).toEqual(Object.values(ErrorCode).sort());
    for (const [code, exit] of rows) expect(exitCodeOf(new VnumError(code as ErrorCode, 'x')), code).toBe(exit);
    expect(rows.filter(([, exit]) => exit === EXIT_USER_ERROR).length).toBeGreaterThan(10);
  });

  it('the wire\'s codes have categories too: a peer\'s garbage is invalid, a peer gone is unavailable', () => {
    expect(errorCategory(new AgiError('AGI_BAD_REPLY', 'x'))).toBe('invalid');
    expect(errorCategory(new AgiError('AGI_CLOSED', 'x'))).toBe('unavailable');
    expect(errorCategory(new AmiError('AMI_LOGIN_FAILED', 'x'))).toBe('setup');
    expect(errorCategory(new AmiHeaderError('x'))).toBe('invalid');
  });
});
