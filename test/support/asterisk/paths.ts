import { repoPath } from '../repo.js';

/** The Debian sid root holding Asterisk 22 (built by provision.sh beside this file). */
export const asteriskRoot = process.env.VNUM_ASTERISK_ROOT ?? repoPath('.cache/asterisk-root');

export const provisionScript = repoPath('test/support/asterisk/provision.sh');
export const dialplanFile = repoPath('dialplan/vnum.conf');

/** The fixed ports, one user at a time (ports-lock.ts). */
export const ports = {
  asteriskSip: 5060,
  carrierIn: 5061,
  carrierOut: 5062,
  router: 4573,
  /** AMI (manager.conf), when a test turns it on. */
  ami: 5038,
} as const;

export const loopback = '127.0.0.1';
