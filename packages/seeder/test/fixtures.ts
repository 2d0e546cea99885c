import { mkdir, mkdtemp, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { resolveSeederConfig, type SeederConfig } from '../src/config.js'

/**
 * A temporary server tree: images, tarballs and torrents directories under a new `dir`,
 * and an image `node` with `etc/hostname`. The caller removes `dir` when the test ends.
 *
 * @example const { dir, config, root } = await writeSeederTree('seeder-publish-')
 */
export async function writeSeederTree(
  prefix: string,
): Promise<{ dir: string; config: SeederConfig; root: string }> {
  const dir = await mkdtemp(join(tmpdir(), prefix))
  const config = resolveSeederConfig({
    imagesDir: join(dir, 'images'),
    tarballsDir: join(dir, 'tarballs'),
    torrentsDir: join(dir, 'torrents'),
    pieceLength: 16 * 1024,
  })
  const root = join(config.imagesDir, 'node')
  await mkdir(join(root, 'etc'), { recursive: true })
  await writeFile(join(root, 'etc/hostname'), 'node\n')
  return { dir, config, root }
}
