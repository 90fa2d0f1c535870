// Dropping root after setup (--user, --group). The order matters: the supplementary groups
// and the group first, while we may still change them, then the user. Without initgroups,
// root's own supplementary groups (and group 0) would stay with the process.
import { execFileSync } from 'node:child_process';
import { logger } from '../log';

const log = logger('server');
// (Node has had process.initgroups on POSIX since 0.9; @types/node leaves it out.)
const posix = process as NodeJS.Process & { initgroups(user: string | number, extraGroup: string | number): void };

/** The primary group of `user` (a name or a numeric id), from the system's user database. */
export function primaryGroupOf(user: string): number {
  const out = execFileSync('id', ['-g', '--', user], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim();
  const gid = Number(out);
  if (!/^\d+$/.test(out) || !Number.isSafeInteger(gid)) throw new Error(`id -g ${user}: unexpected answer "${out}"`);
  return gid;
}

/**
 * Becomes `user` with its own groups (its primary group, or `group` if given), or with only
 * `group` changed when no user is given. Throws with the reason if the system refuses.
 */
export function dropPrivileges(user: string | null, group: string | null): void {
  const fail = (what: string, err: unknown): never => {
    throw new Error(`cannot drop privileges (${what}): ${(err as Error).message}`);
  };
  if (user) {
    let gid: string | number = group ?? 0;
    try { gid = group ?? primaryGroupOf(user); } catch (err) { fail(`user "${user}"`, err); }
    try { posix.initgroups(user, gid); } catch (err) { fail(`initgroups ${user}`, err); }
    try { process.setgid!(gid); } catch (err) { fail(`group ${gid}`, err); }
    try { process.setuid!(user); } catch (err) { fail(`user ${user}`, err); }
  } else if (group) {
    try { process.setgroups!([]); process.setgid!(group); } catch (err) { fail(`group ${group}`, err); }
  }
  log.info('dropped privileges', { user: user ?? undefined, group: group ?? undefined, uid: process.getuid!(), gid: process.getgid!(), groups: process.getgroups!().join(',') });
}
