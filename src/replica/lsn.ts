/**
 * PostgreSQL WAL positions (LSNs). PostgreSQL writes them as two hex halves,
 * 'X/Y', with or without zero padding depending on who formats them
 * (pg-logical-replication pads, the server does not), so they are compared
 * as 64-bit numbers, never as strings.
 */
export type Lsn = bigint;

const TEXT = /^([0-9A-Fa-f]{1,8})\/([0-9A-Fa-f]{1,8})$/;

export function parseLsn(text: string): Lsn {
  const m = TEXT.exec(text);
  if (!m) throw new Error(`not a WAL position: "${text.slice(0, 40)}"`);
  return (BigInt(`0x${m[1]}`) << 32n) | BigInt(`0x${m[2]}`);
}

/** As the server writes it: upper-case hex, no padding. */
export function formatLsn(lsn: Lsn): string {
  return `${(lsn >> 32n).toString(16).toUpperCase()}/${(lsn & 0xffff_ffffn).toString(16).toUpperCase()}`;
}

export function maxLsn(a: Lsn, b: Lsn): Lsn {
  return a > b ? a : b;
}
