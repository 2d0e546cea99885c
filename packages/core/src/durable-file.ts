import { randomBytes } from 'node:crypto'
import { open, rename, unlink } from 'node:fs/promises'
import { dirname } from 'node:path'

/** After a rename, the directory entry itself must reach the disk for the file to survive. */
async function syncDirectory(dir: string): Promise<void> {
  const handle = await open(dir, 'r')
  try {
    await handle.sync()
  } finally {
    await handle.close()
  }
}

/**
 * Writes `data` to `path` so that a crash leaves either the old file or the whole new one,
 * never a part: a temporary file beside it, synced, renamed over it, then the directory
 * synced. Files written this way in order reach the disk in that order, so the last can
 * mark the others complete (a manifest after its torrent).
 *
 * @example await writeFileAtomically('/var/lib/systemimager/torrents/demo.json', json)
 */
export async function writeFileAtomically(path: string, data: string | Uint8Array): Promise<void> {
  const temporary = `${path}.partial-${process.pid}-${randomBytes(4).toString('hex')}`
  try {
    const handle = await open(temporary, 'wx', 0o644)
    try {
      await handle.writeFile(data)
      await handle.sync()
    } finally {
      await handle.close()
    }
    await rename(temporary, path)
  } catch (err) {
    await unlink(temporary).catch(() => undefined)
    throw err
  }
  await syncDirectory(dirname(path))
}
