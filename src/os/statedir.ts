// The client's state directory: client-init.sh records there what it changed (routes, DNS),
// and reads it back as root to undo exactly that. So it must be ours and no one else's: made
// 0700 if missing; a symbolic link, a directory of another user, or one others may write to
// is refused, with the reason (someone could otherwise plant an "undo" list).
import fs from 'node:fs';

/** Makes `dir` (absolute) if missing, mode 0700; throws naming the problem otherwise. */
export function ensurePrivateDir(dir: string): void {
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  const st = fs.lstatSync(dir);
  if (st.isSymbolicLink()) throw new Error(`state directory ${dir} is a symbolic link; refusing it`);
  if (!st.isDirectory()) throw new Error(`state directory ${dir} is not a directory`);
  const uid = process.getuid?.() ?? st.uid;
  if (st.uid !== uid) throw new Error(`state directory ${dir} belongs to uid ${st.uid}, not to us (uid ${uid}); refusing it`);
  if ((st.mode & 0o022) !== 0) throw new Error(`state directory ${dir} may be written by others (mode ${(st.mode & 0o777).toString(8)}); chmod 700 it`);
}
