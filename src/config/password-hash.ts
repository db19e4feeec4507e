// The format of a client password hash (`passwordHash:` in an account): a PHC-style scrypt string
//   $scrypt$ln=14,r=8,p=1$<salt, base64 without padding>$<key, base64 without padding>
// Parsed here so config validation can check it; accounts/password.ts hashes and verifies.

export interface ScryptParams {
  ln: number;
  r: number;
  p: number;
  salt: Buffer;
  hash: Buffer;
}

const PHC = /^\$scrypt\$ln=(\d{1,2}),r=(\d{1,3}),p=(\d{1,3})\$([A-Za-z0-9+/]+)\$([A-Za-z0-9+/]+)$/;

/** Parse and bound-check a hash; undefined when malformed (bounds stop a hostile value costing GiBs). */
export function parsePasswordHash(phc: string): ScryptParams | undefined {
  const m = PHC.exec(phc);
  if (!m) return undefined;
  const [ln, r, p] = [Number(m[1]), Number(m[2]), Number(m[3])];
  if (ln < 1 || ln > 20 || r < 1 || r > 32 || p < 1 || p > 16) return undefined;
  const salt = Buffer.from(m[4]!, 'base64');
  const hash = Buffer.from(m[5]!, 'base64');
  if (salt.length < 8 || hash.length < 16 || hash.length > 64) return undefined;
  return { ln, r, p, salt, hash };
}

const b64 = (buf: Buffer) => buf.toString('base64').replace(/=+$/, '');

export function formatPasswordHash({ ln, r, p, salt, hash }: ScryptParams): string {
  return `$scrypt$ln=${ln},r=${r},p=${p}$${b64(salt)}$${b64(hash)}`;
}
