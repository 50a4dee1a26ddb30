import { ErrorCode, VnumError } from '../errors.js';

/**
 * Opaque cursors for the lists: where the next page starts, never an offset
 * (an offset rescans every row before it). A cursor names its list, so one
 * from /v1/calls is refused by /v1/sessions; its contents are the
 * authority's position (a session's or call's sequence number, a pool
 * number) and may change between versions.
 */
export type CursorList = 'sessions' | 'calls' | 'pool';

export function encodeCursor(list: CursorList, position: number | string): string {
  return Buffer.from(JSON.stringify([list, position])).toString('base64url');
}

const POOL_POSITION = /^\+[1-9][0-9]{6,14}$/;

export function decodeCursor(list: 'sessions' | 'calls', text: string): number;
export function decodeCursor(list: 'pool', text: string): string;
export function decodeCursor(list: CursorList, text: string): number | string {
  let decoded: unknown;
  try {
    decoded = JSON.parse(Buffer.from(text, 'base64url').toString('utf8'));
  } catch {
    decoded = undefined;
  }
  if (Array.isArray(decoded) && decoded.length === 2 && decoded[0] === list) {
    const position: unknown = decoded[1];
    if (list === 'pool' ? typeof position === 'string' && POOL_POSITION.test(position) : Number.isSafeInteger(position) && (position as number) > 0) {
      return position as number | string;
    }
  }
  throw new VnumError(ErrorCode.InvalidArgument, `invalid cursor: pass the "next" of a page of ${list} unchanged`);
}
