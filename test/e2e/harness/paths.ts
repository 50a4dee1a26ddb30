import { fileURLToPath } from 'node:url';
import path from 'node:path';

/** The repository this harness belongs to. */
export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');

/** The Debian sid root holding Asterisk 22 (see test/e2e/provision.sh). */
export const asteriskRoot = process.env.VNUM_ASTERISK_ROOT ?? path.join(repoRoot, '.cache/asterisk-root');

export const provisionScript = path.join(repoRoot, 'test/e2e/provision.sh');
export const dialplanFile = path.join(repoRoot, 'dialplan/vnum.conf');
export const cliMain = path.join(repoRoot, 'dist/src/cli/main.js');

/** Fixed ports (see the harness README in test/e2e/README.md). */
export const ports = {
  asteriskSip: 5060,
  carrierIn: 5061,
  carrierOut: 5062,
  router: 4573,
  /** AMI (manager.conf), when a test turns it on. */
  ami: 5038,
} as const;

export const loopback = '127.0.0.1';
