// Secrets in the shared state are sealed exactly as in the embedded store (src/state/store.ts):
// AES-256-GCM from src/state/crypto.ts, a key derived from state.secretKey and a salt kept beside the
// data, and an AAD of "<mailbox>\0<column>" so a value moved to another mailbox does not open.
import { randomBytes } from 'node:crypto';
import { DecryptError, SALT_LEN, deriveKey, open, seal } from '../state/crypto.js';

export type SealedColumn = 'access_token' | 'refresh_token';

/** the same known plaintext as the embedded store's key check */
const KEY_CHECK_PLAINTEXT = 'xoauth2-proxy key check';
const KEY_CHECK_AAD = 'key_check';

export function newSalt(): Buffer {
  return randomBytes(SALT_LEN);
}

export class Sealer {
  private readonly key: Buffer;

  constructor(
    secret: string,
    readonly salt: Buffer,
  ) {
    this.key = deriveKey(secret, salt);
  }

  seal(mailbox: string, column: SealedColumn, value: string): Buffer {
    return seal(this.key, value, `${mailbox}\0${column}`);
  }

  /** undefined: sealed under another key or damaged */
  open(mailbox: string, column: SealedColumn, sealed: Buffer): string | undefined {
    try {
      return open(this.key, sealed, `${mailbox}\0${column}`);
    } catch (err) {
      if (err instanceof DecryptError) return undefined;
      throw err;
    }
  }

  keyCheck(): Buffer {
    return seal(this.key, KEY_CHECK_PLAINTEXT, KEY_CHECK_AAD);
  }

  /** does a key check written by another instance open under this key? */
  verifies(check: Buffer): boolean {
    try {
      return open(this.key, check, KEY_CHECK_AAD) === KEY_CHECK_PLAINTEXT;
    } catch (err) {
      if (err instanceof DecryptError) return false;
      throw err;
    }
  }
}
