import type { E164 } from '../numbers/normalise.js';
import type { SessionState } from './state.js';

/**
 * What a session is, as read from the store (./sessions.ts creates, releases
 * and reads them; ./json.ts and ./events.ts show them).
 */
export interface Party {
  number: E164;
  /** The virtual number the other party sees for this one, and dials to reach it. */
  maskedAs: E164;
}

export interface Session {
  id: string;
  state: SessionState;
  createdAt: number;
  expiresAt: number | null;
  releasedAt: number | null;
  endsAt: number | null;
  parties: [Party, Party];
}
