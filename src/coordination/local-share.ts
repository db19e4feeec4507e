// An instance's safe share of a mailbox-wide limit while it cannot reach the shared state: with
// `instances` instances each held to floor(limit / instances) (at least 1), together they stay within
// the limit whenever limit >= instances.
export function localShare(limit: number, instances: number): number {
  return Math.max(1, Math.floor(limit / Math.max(1, instances)));
}
