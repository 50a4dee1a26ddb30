import type { E164 } from '../numbers/normalise.js';
import type { CallSettings } from './call-settings.js';
import type { SessionState } from './state.js';

/**
 * What a session is, as read from the store (./sessions.ts creates, releases
 * and reads them; ./json.ts and ./events.ts show them).
 */
export interface Party {
  number: E164;
  /** The virtual number the other party sees for this one, and dials to reach it. */
  maskedAs: E164;
  /**
   * What this party types, calling the other party's masked number from a
   * phone that is not its own (./pin.ts). Only in the answer to the create
   * that issued it: the store keeps a digest, never the digits.
   */
  pin?: string;
}

export interface Session {
  id: string;
  state: SessionState;
  createdAt: number;
  expiresAt: number | null;
  releasedAt: number | null;
  endsAt: number | null;
  /** Sliding TTL: the session ends this long after its last call (never past expiresAt); null: fixed. */
  idleMs: number | null;
  /** Announcements, limits, recording: what this session sets ({} for all defaults). */
  callSettings: CallSettings;
  parties: [Party, Party];
}
