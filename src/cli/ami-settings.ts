import { AMI_DEFAULTS } from '../ami/client.js';
import { ErrorCode, VnumError } from '../errors.js';
import { readSecretFile } from './secret-file.js';
import { hostSetting, tcpPort } from './settings.js';

export { secretFileModeProblem } from './secret-file.js';

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

function configuration(message: string): VnumError {
  return new VnumError(ErrorCode.Configuration, message);
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
  if (given(file)) secret = readSecretFile(file, 'AMI secret file', ErrorCode.Configuration);
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
