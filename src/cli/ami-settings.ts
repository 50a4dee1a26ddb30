import { closeSync, constants, fstatSync, openSync, readSync } from 'node:fs';
import { AMI_DEFAULTS } from '../ami/client.js';
import { ErrorCode, VnumError } from '../errors.js';
import { hostSetting, tcpPort } from './settings.js';

/**
 * Where `vnum serve` finds AMI: flags, else the environment. AMI is on when a
 * user is named. The secret never comes from a flag (a command line is
 * visible to every user of the machine in `ps`): `VNUM_AMI_SECRET`, or a file
 * named by `--ami-secret-file` / `VNUM_AMI_SECRET_FILE` (e.g. a systemd
 * credential or a Docker secret).
 *
 * Every mistake is a configuration error before anything starts: an AMI
 * setting without a user (AMI would silently stay off), a bad host or port, a
 * secret file that others can read, that is not a regular file, or a secret
 * Asterisk would read differently (line breaks, surrounding blanks, which
 * manager.conf trims).
 */
export interface AmiSettings {
  host: string;
  port: number;
  username: string;
  secret: string;
}

export interface AmiFlags {
  amiHost?: string | undefined;
  amiPort?: string | undefined;
  amiUser?: string | undefined;
  amiSecretFile?: string | undefined;
}

/** A secret is a line of text; anything bigger is the wrong file. */
const MAX_SECRET_FILE_BYTES = 4096;

function configuration(message: string): VnumError {
  return new VnumError(ErrorCode.Configuration, message);
}

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

function readSecretFile(file: string): string {
  let fd: number;
  try {
    // O_NONBLOCK: a FIFO opens at once (and is then refused) instead of hanging the start.
    fd = openSync(file, constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOCTTY);
  } catch (e) {
    throw configuration(`cannot read the AMI secret file "${file}": ${(e as Error).message}`);
  }
  try {
    // fstat the file that was opened: no window for a swap between check and read.
    const stat = fstatSync(fd);
    if (!stat.isFile()) throw configuration(`the AMI secret file "${file}" is not a regular file`);
    const problem = secretFileModeProblem(stat.mode, stat.uid);
    if (problem) throw configuration(`the AMI secret file "${file}" is not owner-only: ${problem}`);
    if (stat.size > MAX_SECRET_FILE_BYTES) {
      throw configuration(`the AMI secret file "${file}" holds ${stat.size} bytes: a secret is one line`);
    }
    const buffer = Buffer.alloc(MAX_SECRET_FILE_BYTES + 1);
    let length = 0;
    for (let n; length < buffer.length && (n = readSync(fd, buffer, length, buffer.length - length, null)) > 0; ) length += n;
    return buffer.subarray(0, length).toString('utf8').replace(/\r?\n$/, '');
  } finally {
    closeSync(fd);
  }
}

function given(value: string | undefined): value is string {
  return value !== undefined && value !== '';
}

export function amiSettings(flags: AmiFlags, env: NodeJS.ProcessEnv = process.env): AmiSettings | null {
  const username = flags.amiUser ?? env.VNUM_AMI_USER ?? '';
  const host = flags.amiHost ?? env.VNUM_AMI_HOST;
  const portText = flags.amiPort ?? env.VNUM_AMI_PORT;
  const file = flags.amiSecretFile ?? env.VNUM_AMI_SECRET_FILE;
  if (username === '') {
    const stray = [
      given(host) && '--ami-host/VNUM_AMI_HOST',
      given(portText) && '--ami-port/VNUM_AMI_PORT',
      given(file) && '--ami-secret-file/VNUM_AMI_SECRET_FILE',
      given(env.VNUM_AMI_SECRET) && 'VNUM_AMI_SECRET',
    ].filter((s): s is string => typeof s === 'string');
    if (stray.length > 0) {
      throw configuration(`${stray.join(', ')} given without an AMI user (--ami-user or VNUM_AMI_USER): AMI would stay off`);
    }
    return null;
  }
  if (/[\p{Cc}\s\][]/u.test(username)) {
    throw configuration(`invalid AMI user "${username}": a manager.conf section name, without blanks, brackets or control characters`);
  }
  const settings = {
    host: hostSetting('AMI host (--ami-host/VNUM_AMI_HOST)', given(host) ? host : '127.0.0.1'),
    port: tcpPort('AMI port (--ami-port/VNUM_AMI_PORT)', given(portText) ? portText : String(AMI_DEFAULTS.port)),
    username,
  };
  let secret: string;
  if (given(file)) secret = readSecretFile(file);
  else if (given(env.VNUM_AMI_SECRET)) secret = env.VNUM_AMI_SECRET;
  else {
    throw configuration(`AMI user "${username}" given without a secret: set VNUM_AMI_SECRET_FILE (or --ami-secret-file) or VNUM_AMI_SECRET`);
  }
  if (secret === '') throw configuration('the AMI secret is empty');
  if (/[\r\n\0]/.test(secret)) throw configuration('the AMI secret holds a line break or NUL');
  if (secret.trim() !== secret) {
    throw configuration('the AMI secret starts or ends with a blank: manager.conf trims its values, so Asterisk would expect another secret');
  }
  return { ...settings, secret };
}
