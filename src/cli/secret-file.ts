import { closeSync, constants, fstatSync, openSync, readSync } from 'node:fs';
import { ErrorCode, VnumError } from '../errors.js';

/**
 * Secrets a long-running face reads from a file (a systemd credential, a
 * Docker secret): the AMI secret, the webhook signing secrets. Never from a
 * flag: a command line is visible to every user of the machine in `ps`.
 */

/** A secret file holds a line or two; anything bigger is the wrong file. */
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
 * The file's text, one trailing newline removed. `label` names it in errors
 * (`the AMI secret file "…" is not owner-only: …`), all VNUM_CONFIGURATION.
 */
export function readSecretFile(file: string, label: string): string {
  const configuration = (message: string) => new VnumError(ErrorCode.Configuration, message);
  let fd: number;
  try {
    // O_NONBLOCK: a FIFO opens at once (and is then refused) instead of hanging the start.
    fd = openSync(file, constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOCTTY);
  } catch (e) {
    throw configuration(`cannot read the ${label} "${file}": ${(e as Error).message}`);
  }
  try {
    // fstat the file that was opened: no window for a swap between check and read.
    const stat = fstatSync(fd);
    if (!stat.isFile()) throw configuration(`the ${label} "${file}" is not a regular file`);
    const problem = secretFileModeProblem(stat.mode, stat.uid);
    if (problem) throw configuration(`the ${label} "${file}" is not owner-only: ${problem}`);
    if (stat.size > MAX_SECRET_FILE_BYTES) {
      throw configuration(`the ${label} "${file}" holds ${stat.size} bytes: a secret is one line`);
    }
    const buffer = Buffer.alloc(MAX_SECRET_FILE_BYTES + 1);
    let length = 0;
    for (let n; length < buffer.length && (n = readSync(fd, buffer, length, buffer.length - length, null)) > 0; ) length += n;
    return buffer.subarray(0, length).toString('utf8').replace(/\r?\n$/, '');
  } finally {
    closeSync(fd);
  }
}
