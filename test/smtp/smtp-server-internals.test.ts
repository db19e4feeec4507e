import { readFileSync } from 'node:fs';
import type net from 'node:net';
import { describe, expect, it } from 'vitest';
import { SMTPServer } from 'smtp-server';
import { SMTPConnection } from 'smtp-server/lib/smtp-connection.js';
import {
  SMTP_SERVER_VERSION,
  SmtpServerInternalsError,
  checkSmtpServerInternals,
} from '../../src/smtp/smtp-server-internals.js';

const json = (rel: string) => JSON.parse(readFileSync(new URL(rel, import.meta.url), 'utf8'));

/** The message of the error `check` throws (fails the test if it does not throw one). */
function failure(check: () => void): string {
  try {
    check();
  } catch (e) {
    expect(e).toBeInstanceOf(SmtpServerInternalsError);
    return (e as Error).message;
  }
  throw new Error('the check passed');
}

describe('smtp-server internals', () => {
  it('package.json pins smtp-server to exactly the version the adapter was written for, and it is installed', () => {
    expect(json('../../package.json').dependencies['smtp-server']).toBe(SMTP_SERVER_VERSION);
    expect(json('../../node_modules/smtp-server/package.json').version).toBe(SMTP_SERVER_VERSION);
  });

  it('the installed smtp-server has every internal the proxy uses', () => {
    expect(() => checkSmtpServerInternals()).not.toThrow();
  });

  it('a missing method of SMTPConnection fails the check, naming it and the pinned version', () => {
    class NoOnCommand extends SMTPConnection {}
    Object.defineProperty(NoOnCommand.prototype, '_onCommand', { value: undefined });
    const msg = failure(() => checkSmtpServerInternals({ Server: SMTPServer, Connection: NoOnCommand }));
    expect(msg).toContain('SMTPConnection.prototype "_onCommand" should be a function, it is missing');
    expect(msg).toContain(`pinned to smtp-server ${SMTP_SERVER_VERSION}`);
    expect(msg).toContain(`installed: ${SMTP_SERVER_VERSION}`);
  });

  it('a missing field of a connection fails the check, naming it', () => {
    class NoParser extends SMTPConnection {
      constructor(server: SMTPServer, socket: net.Socket) {
        super(server, socket);
        Reflect.deleteProperty(this, '_parser');
      }
    }
    expect(failure(() => checkSmtpServerInternals({ Server: SMTPServer, Connection: NoParser }))).toContain(
      'SMTPConnection "_parser" should be an object, it is missing',
    );
    class RenamedDataStream extends SMTPConnection {
      constructor(server: SMTPServer, socket: net.Socket) {
        super(server, socket);
        Reflect.deleteProperty(this, '_dataStream');
        Reflect.set(this, 'dataStream', false);
      }
    }
    expect(
      failure(() => checkSmtpServerInternals({ Server: SMTPServer, Connection: RenamedDataStream })),
    ).toContain('SMTPConnection "_dataStream" should be false, it is missing');
  });

  it('a missing field of the server fails the check, naming it', () => {
    class NoPendingSockets extends SMTPServer {
      constructor(options: ConstructorParameters<typeof SMTPServer>[0]) {
        super(options);
        Reflect.deleteProperty(this, '_pendingSockets');
      }
    }
    expect(
      failure(() => checkSmtpServerInternals({ Server: NoPendingSockets, Connection: SMTPConnection })),
    ).toContain('SMTPServer "_pendingSockets" should be a Map, it is missing');
  });
});
