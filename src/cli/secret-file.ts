import { closeSync, constants, fstatSync, openSync, readSync } from 'node:fs';
import { VnumError, type ErrorCode } from '../errors.js';

/**
 * Secrets handed to vnum in files (the AMI secret, a provider's token):
 * never on a command line, which every user of the machine sees in `ps`.
 * The file is a systemd credential, a Docker secret or a root-owned file.
 */

/** A secret is a line of text; anything bigger is the wrong file. */
const MAX_SECRET_FILE_BYTES = 4096;

/**
 * Owner-only, as for PostgreSQL's key files: no access for others, and none
 * for the group either, unless root owns the file and the group may only read
 * it (root:vnum 0640, a common way to hand a service its secret).
 */
export function secretFileModeProblem(mode: number, uid: number): string | null {
  const perms = mode & 0o777;
  if ((perms & 0o077) === 0) return null;
  if (uid === 0 && (perms & 0o037) === 0) return null;
  return `mode ${perms.toString(8).padStart(4, '0')} lets others than its owner read or change it: chmod 600 it (or 640, owned by root)`;
}

/**
 * The secret in `file` (`what` names it in errors, e.g. "AMI secret file"),
 * one trailing newline dropped. Refused with `code`: a file that cannot be
 * read, is not a regular file, is not owner-only, or is bigger than a secret.
 */
export function readSecretFile(file: string, what: string, code: ErrorCode): string {
  let fd: number;
  try {
    // O_NONBLOCK: a FIFO opens at once (and is then refused) instead of hanging.
    fd = openSync(file, constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOCTTY);
  } catch (e) {
    throw new VnumError(code, `cannot read the ${what} "${file}": ${(e as Error).message}`);
  }
  try {
    // fstat the file that was opened: no window for a swap between check and read.
    const stat = fstatSync(fd);
    if (!stat.isFile()) throw new VnumError(code, `the ${what} "${file}" is not a regular file`);
    const problem = secretFileModeProblem(stat.mode, stat.uid);
    if (problem) throw new VnumError(code, `the ${what} "${file}" is not owner-only: ${problem}`);
    if (stat.size > MAX_SECRET_FILE_BYTES) {
      throw new VnumError(code, `the ${what} "${file}" holds ${stat.size} bytes: a secret is one line`);
    }
    const buffer = Buffer.alloc(MAX_SECRET_FILE_BYTES + 1);
    let length = 0;
    for (let n; length < buffer.length && (n = readSync(fd, buffer, length, buffer.length - length, null)) > 0; ) length += n;
    return buffer.subarray(0, length).toString('utf8').replace(/\r?\n$/, '');
  } finally {
    closeSync(fd);
  }
}
