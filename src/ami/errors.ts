import { CodedError, type AmiErrorCode } from '../errors.js';

export type { AmiErrorCode };

export class AmiError extends CodedError<AmiErrorCode> {}

/** An action refused before it reached the wire: a header that could change the message's framing (./action.ts). */
export class AmiHeaderError extends AmiError {
  constructor(message: string) {
    super('AMI_BAD_HEADER', message);
  }
}
