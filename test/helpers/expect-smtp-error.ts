// Expecting a local failure: the promise must reject with an SmtpError (the reply a client would
// get); a resolution or another error fails the test, saying what came instead.
import { expect } from 'vitest';
import { SmtpError } from '../../src/shared/smtp-reply.js';

/** The SmtpError `p` rejects with. */
export async function expectSmtpError(p: Promise<unknown>): Promise<SmtpError> {
  const err = await p.then(
    (v) => {
      throw new Error(`expected an SmtpError, but it resolved with ${JSON.stringify(v)}`);
    },
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(SmtpError);
  return err as SmtpError;
}
