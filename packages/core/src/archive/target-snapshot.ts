import {
  chmod,
  chown,
  lstat,
  mkdir,
  readdir,
  readFile,
  rm,
  stat,
  utimes,
  writeFile,
} from 'node:fs/promises'
import { join } from 'node:path'

/**
 * Written into the target root by the install client before extraction starts and
 * removed only once it has finished: a root that still holds it is half-installed,
 * whatever else it contains.
 */
export const INCOMPLETE_MARKER = '.imageswarm-incomplete'

/**
 * Names at the top of a target root that do not make it non-empty for `extractArchive`:
 * the install client's marker of an unfinished install (`.imageswarm-incomplete`, written
 * before extraction starts) and the `lost+found` of a freshly made filesystem. Such an
 * entry counts only while it is a regular file of at most 64 KiB or an empty directory;
 * a refused extraction puts it back as it was (content, mode, owner).
 */
export const IGNORED_TARGET_ENTRIES: readonly string[] = [INCOMPLETE_MARKER, 'lost+found']

/** Kept files are read into memory to be put back after a refusal: small ones only. */
const KEPT_FILE_LIMIT = 64 * 1024

/** What an empty target held (the ignored entries), to put it back after a refusal. */
export interface TargetSnapshot {
  kept: KeptEntry[]
  mode: number
  uid: number
  gid: number
  atimeMs: number
  mtimeMs: number
}

export interface KeptEntry {
  name: string
  /** A regular file's bytes; `undefined` for an empty directory. */
  content: Buffer | undefined
  mode: number
  uid: number
  gid: number
}

/**
 * The target's state when it holds nothing but `ignore` entries, else `undefined`. Only
 * such a target may be extracted into while validating: whatever tar writes there can be
 * told apart from what was there before, and removed.
 */
export async function snapshotEmptyTarget(
  target: string,
  ignore: readonly string[],
): Promise<TargetSnapshot | undefined> {
  const kept: KeptEntry[] = []
  for (const name of await readdir(target)) {
    if (!ignore.includes(name)) return undefined
    const path = join(target, name)
    const st = await lstat(path)
    const owner = { mode: st.mode, uid: st.uid, gid: st.gid }
    if (st.isDirectory() && (await readdir(path)).length === 0) {
      kept.push({ name, content: undefined, ...owner })
    } else if (st.isFile() && st.size <= KEPT_FILE_LIMIT) {
      kept.push({ name, content: await readFile(path), ...owner })
    } else {
      return undefined
    }
  }
  const st = await stat(target)
  return {
    kept,
    mode: st.mode,
    uid: st.uid,
    gid: st.gid,
    atimeMs: st.atimeMs,
    mtimeMs: st.mtimeMs,
  }
}

/**
 * Puts an empty target back as `snapshotEmptyTarget` found it: removes every entry tar
 * made, restores the kept ones and the root's mode, owner and times. Returns the number
 * of entries removed at the top (and inside kept directories).
 */
export async function restoreTarget(target: string, snapshot: TargetSnapshot): Promise<number> {
  const kept = new Map(snapshot.kept.map((entry) => [entry.name, entry]))
  const remove = (path: string) => rm(path, { recursive: true, force: true })
  let removed = 0
  for (const name of await readdir(target)) {
    if (kept.has(name)) continue
    await remove(join(target, name))
    removed++
  }
  for (const entry of snapshot.kept) {
    const path = join(target, entry.name)
    const st = await lstat(path).catch(() => undefined)
    if (entry.content === undefined) {
      if (st?.isDirectory()) {
        for (const child of await readdir(path)) {
          await remove(join(path, child))
          removed++
        }
      } else {
        await remove(path)
        await mkdir(path)
      }
    } else if (!st?.isFile() || !(await readFile(path)).equals(entry.content)) {
      await remove(path)
      await writeFile(path, entry.content)
    }
    await chown(path, entry.uid, entry.gid)
    await chmod(path, entry.mode & 0o7777)
  }
  await chown(target, snapshot.uid, snapshot.gid)
  await chmod(target, snapshot.mode & 0o7777)
  await utimes(target, snapshot.atimeMs / 1000, snapshot.mtimeMs / 1000)
  return removed
}
