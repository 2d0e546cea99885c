import { execFile } from 'node:child_process'
import { existsSync } from 'node:fs'
import { link, mkdir, open, readdir, readFile, truncate, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { promisify } from 'node:util'
import {
  buildFidelityTree,
  compareTrees,
  FIDELITY_COMMANDS,
  INSTALL_RECORD_SKIP,
  isRoot,
  missingRequirements,
} from '@imageswarm/core/testing'
import { describe, expect, it } from 'vitest'
import { CLI, runInstall, startServer } from '../scripts/lib/deployment.mjs'
import { useServerFixture } from './helpers/server-fixture.js'
import { clientDirs, makeServerLayout } from './helpers/workspace.js'

const env = useServerFixture()
const run = promisify(execFile)

/** Built once per machine by scripts/make-debian-root.sh (scripts/setup.sh --test). */
const DEBIAN_ROOT =
  process.env.IMAGESWARM_DEBIAN_ROOT ?? '/var/cache/imageswarm-tests/bookworm-minbase'

const missing = !existsSync(join(DEBIAN_ROOT, 'etc/debian_version'))
  ? `no Debian root at ${DEBIAN_ROOT} (scripts/make-debian-root.sh builds it)`
  : missingRequirements([...FIDELITY_COMMANDS, 'cp'])
if (missing) console.warn(`image fidelity tests skipped: ${missing}`)

/**
 * The image: a debootstrapped Debian minbase root, plus every special case an OS root
 * can hold (capabilities, devices, FIFOs, ACLs, binary xattrs, odd owners, names, modes
 * and times), a 1 GiB sparse file with a little data, and a setuid hardlink group.
 */
async function makeDebianImage(imagesDir: string): Promise<string> {
  const image = join(imagesDir, 'debian')
  await mkdir(imagesDir, { recursive: true })
  // cp, not tar, makes the copy, so the archive engine is not tested against itself.
  await run('cp', ['-a', '--preserve=all', '--sparse=always', DEBIAN_ROOT, image])
  await buildFidelityTree(join(image, 'srv/fidelity'))
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

    // The default excludes leave out what the runtime mounts over (/proc, /sys, /dev/pts,
    // /run), keeping the directories themselves; everything else must be identical.
    const runtime: string[] = [...INSTALL_RECORD_SKIP]
    for (const dir of ['proc', 'sys', 'dev/pts', 'run']) {
      const names = await readdir(join(image, dir)).catch(() => [])
      runtime.push(...names.map((name) => `${dir}/${name}`))
    }
    const differences = await compareTrees(image, dirs.target, { skipPaths: runtime })
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
