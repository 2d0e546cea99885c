import { execFile } from 'node:child_process'
import { existsSync } from 'node:fs'
import { link, open, readFile, truncate, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { compareTrees, isRoot } from '@imageswarm/core/testing'
import { describe, expect, it } from 'vitest'
import { CLI, runInstall, startServer } from '../scripts/lib/deployment.mjs'
import { copyDebianImage, missingDebianImage, runtimeSkips } from './helpers/debian-image.js'
import { useServerFixture } from './helpers/server-fixture.js'
import { clientDirs, makeServerLayout } from './helpers/workspace.js'

const env = useServerFixture()
const run = promisify(execFile)

const missing = missingDebianImage()
if (missing) console.warn(`image fidelity tests skipped: ${missing}`)

/**
 * The image: a debootstrapped Debian minbase root, plus every special case an OS root
 * can hold (capabilities, devices, FIFOs, ACLs, binary xattrs, odd owners, names, modes
 * and times), a 1 GiB sparse file with a little data, and a setuid hardlink group.
 */
async function makeDebianImage(imagesDir: string): Promise<string> {
  const image = await copyDebianImage(imagesDir)
  const sparse = join(image, 'var/lib/disk.img')
  await writeFile(sparse, '')
  await truncate(sparse, 1024 ** 3)
  const handle = await open(sparse, 'r+')
  try {
    await handle.write(
      Buffer.from('imageswarm sparse data\n'.repeat(200)),
      0,
      undefined,
      512 * 1024 ** 2,
    )
  } finally {
    await handle.close()
  }
  await link(join(image, 'srv/fidelity/bin/su'), join(image, 'srv/fidelity/bin/su-hardlink'))
  return image
}

describe.skipIf(Boolean(missing) || !isRoot)('a real Debian root through serve and install', () => {
  it('arrives in the target root with zero differences in any attribute', async () => {
    env.layout = await makeServerLayout('imageswarm-fidelity-')
    const image = await makeDebianImage(env.layout.imagesDir)
    env.server = await startServer({ images: ['debian'], ...env.layout! })
    const dirs = clientDirs(env.layout, 1)
    const result = await runInstall({
      server: env.server.url,
      image: 'debian',
      ...dirs,
      seedTime: 0,
    })
    expect(result.failed?.error).toBeUndefined()
    expect(result.code).toBe(0)

    // Everything but the runtime directories' contents (left out by the default excludes)
    // must be identical.
    const differences = await compareTrees(image, dirs.target, {
      skipPaths: await runtimeSkips(image),
    })
    expect(differences).toEqual([])
    for (const dir of ['proc', 'sys', 'run']) expect(existsSync(join(dirs.target, dir))).toBe(true)
    // The sparse file stayed sparse: a little data, not a gigabyte of zeros.
    const { stdout } = await run('du', ['-k', join(dirs.target, 'var/lib/disk.img')])
    expect(Number(stdout.split('\t')[0])).toBeLessThan(1024)
  })

  it('packs the same root to the same archive and infohash with fresh state', async () => {
    env.layout = await makeServerLayout('imageswarm-determinism-')
    await makeDebianImage(env.layout.imagesDir)
    const publish = async (name: string) => {
      const tarballs = join(env.layout!.dir, name, 'tarballs')
      const torrents = join(env.layout!.dir, name, 'torrents')
      const { stdout } = await run(process.execPath, [
        CLI,
        'publish',
        '--image',
        'debian',
        '--images-dir',
        env.layout!.imagesDir,
        '--tarballs-dir',
        tarballs,
        '--torrents-dir',
        torrents,
        '--advertise-address',
        '127.0.0.1',
      ])
      const manifest = JSON.parse(
        await readFile(join(torrents, 'image-debian.manifest.json'), 'utf8'),
      ) as { sha256: string; infoHash: string }
      return { manifest, archive: await readFile(join(tarballs, 'image-debian.tar.zst')), stdout }
    }
    const first = await publish('first')
    const second = await publish('second')
    expect(second.manifest.infoHash).toBe(first.manifest.infoHash)
    expect(second.manifest.sha256).toBe(first.manifest.sha256)
    expect(second.archive.equals(first.archive)).toBe(true)
  })
})
