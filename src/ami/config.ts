import { readFileSync, statSync } from 'node:fs';
import { ErrorCode, VnumError } from '../errors.js';
import { AMI_DEFAULTS } from './client.js';

/**
 * Where `vnum serve` finds AMI: flags, else the environment. AMI is on when a
 * user is named. The secret never comes from a flag (a command line is
 * visible to every user of the machine in `ps`): `VNUM_AMI_SECRET`, or a file
 * named by `--ami-secret-file` / `VNUM_AMI_SECRET_FILE` (e.g. a systemd
 * credential or a Docker secret).
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

export interface AmiSettingsResult {
  settings: AmiSettings | null;
  /** Things an operator should hear about (e.g. a secret file others can read). */
  warnings: string[];
}

export function amiSettings(flags: AmiFlags, env: NodeJS.ProcessEnv = process.env): AmiSettingsResult {
  const warnings: string[] = [];
  const username = flags.amiUser ?? env.VNUM_AMI_USER ?? '';
  if (username === '') return { settings: null, warnings };
  const host = flags.amiHost ?? env.VNUM_AMI_HOST ?? '127.0.0.1';
  const portText = flags.amiPort ?? env.VNUM_AMI_PORT ?? String(AMI_DEFAULTS.port);
  const port = Number(portText);
  if (!/^\d{1,5}$/.test(portText) || port < 1 || port > 65535) {
    throw new VnumError(ErrorCode.InvalidArgument, `invalid AMI port "${portText}"`);
  }
  const file = flags.amiSecretFile ?? env.VNUM_AMI_SECRET_FILE;
  let secret: string;
  if (file !== undefined && file !== '') {
    try {
      secret = readFileSync(file, 'utf8').replace(/\r?\n$/, '');
      if ((statSync(file).mode & 0o077) !== 0) warnings.push(`AMI secret file ${file} is readable by others than its owner: chmod 600 it`);
    } catch (e) {
      throw new VnumError(ErrorCode.InvalidArgument, `cannot read the AMI secret file ${file}: ${(e as Error).message}`);
    }
  } else if (env.VNUM_AMI_SECRET !== undefined && env.VNUM_AMI_SECRET !== '') {
    secret = env.VNUM_AMI_SECRET;
  } else {
    throw new VnumError(
      ErrorCode.InvalidArgument,
      `AMI user "${username}" given without a secret: set VNUM_AMI_SECRET_FILE (or --ami-secret-file) or VNUM_AMI_SECRET`,
    );
  }
  if (secret === '') throw new VnumError(ErrorCode.InvalidArgument, 'the AMI secret is empty');
  if (/[\r\n\0]/.test(secret) || /[\r\n\0]/.test(username)) {
    throw new VnumError(ErrorCode.InvalidArgument, 'the AMI user or secret holds a line break or NUL');
  }
  return { settings: { host, port, username, secret }, warnings };
}
