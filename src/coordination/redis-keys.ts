// The Redis key layout (src/coordination/README.md, "Redis keys"). Every key of one mailbox carries
// the mailbox as a hash tag, so a mailbox's keys share a slot and one script may touch them all.
export interface MailboxKeys {
  leases: string;
  rate: string;
  rateSum: string;
  token: string;
  refresh: string;
  fence: string;
  lock: string;
  state: string;
}

export class RedisKeys {
  readonly meta: string;
  readonly events: string;

  constructor(readonly prefix: string) {
    this.meta = `${prefix}meta`;
    this.events = `${prefix}events`;
  }

  mailbox(mailbox: string): MailboxKeys {
    const p = `${this.prefix}{${mailbox}}:`;
    return {
      leases: p + 'leases',
      rate: p + 'rate',
      rateSum: p + 'rate:sum',
      token: p + 'token',
      refresh: p + 'refresh',
      fence: p + 'fence',
      lock: p + 'lock',
      state: p + 'state',
    };
  }
}
