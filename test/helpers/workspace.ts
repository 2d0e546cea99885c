import { mkdir, mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { makeSampleImage } from '../../scripts/lib/sample-image.mjs'

/** A temporary server layout (images, tarballs, torrents) that the test removes. */
export interface ServerLayout {
  dir: string
  imagesDir: string
  tarballsDir: string
  torrentsDir: string
  pidFile: string
  remove(): Promise<void>
}

export async function makeServerLayout(prefix = 'imageswarm-e2e-'): Promise<ServerLayout> {
  const dir = await mkdtemp(join(tmpdir(), prefix))
  const layout = {
    dir,
    imagesDir: join(dir, 'images'),
    tarballsDir: join(dir, 'tarballs'),
    torrentsDir: join(dir, 'torrents'),
    pidFile: join(dir, 'serve.pid'),
    remove: () => rm(dir, { recursive: true, force: true }),
  }
  await mkdir(layout.imagesDir, { recursive: true })
  return layout
}

/** A small sample image (about 6 MiB) under the layout's images directory. */
export async function addSampleImage(layout: ServerLayout, name: string, seed = name) {
  return makeSampleImage(join(layout.imagesDir, name), {
    dirs: 10,
    filesPerDir: 20,
    bigFiles: 2,
    bigFileBytes: 3 * 1024 * 1024,
    seed,
  })
}

/** Staging and target directories for client number `n`. */
export function clientDirs(layout: ServerLayout, n: number, group = 'client') {
  return {
    staging: join(layout.dir, `${group}${n}`, 'staging'),
    target: join(layout.dir, `${group}${n}`, 'a'),
  }
}
