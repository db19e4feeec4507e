// Expecting a failure: the promise must reject with an error of the given class (an SmtpError: the
// reply a client would get); a resolution or another error fails the test, saying what came instead.
import { expect } from 'vitest';
import { SmtpError } from '../../src/shared/smtp-reply.js';

/** The error `p` rejects with, checked to be a `kind`. */
export async function expectRejection<E extends Error>(
  p: Promise<unknown>,
  kind: abstract new (...args: any[]) => E,
): Promise<E> {
  const err = await p.then(
    (v) => {
      throw new Error(`expected a ${kind.name}, but it resolved with ${JSON.stringify(v)}`);
    },
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(kind);
  return err as E;
}

/** The SmtpError `p` rejects with. */
export const expectSmtpError = (p: Promise<unknown>): Promise<SmtpError> => expectRejection(p, SmtpError);
