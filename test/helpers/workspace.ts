import { once } from 'node:events'
import { mkdir, mkdtemp, rm } from 'node:fs/promises'
import { createServer } from 'node:net'
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

/** A TCP port free on loopback a moment ago, for a server started with `--port`. */
export async function freePort(): Promise<number> {
  const probe = createServer().listen(0, '127.0.0.1')
  await once(probe, 'listening')
  const { port } = probe.address() as { port: number }
  await new Promise((resolve) => probe.close(resolve))
  return port
}

/**
 * The environment of a server process run in `layout` on `port` (the CLI reads its
 * directories from IMAGESWARM_*), with a SystemImager bittorrent.conf of the layout's own
 * (`bittorrent.conf` in its directory: absent unless the test writes it), not this machine's.
 */
export function serverEnv(layout: ServerLayout, port: number): NodeJS.ProcessEnv {
  return {
    ...process.env,
    IMAGESWARM_IMAGES_DIR: layout.imagesDir,
    IMAGESWARM_TARBALLS_DIR: layout.tarballsDir,
    IMAGESWARM_TORRENTS_DIR: layout.torrentsDir,
    IMAGESWARM_PID_FILE: layout.pidFile,
    IMAGESWARM_PORT: String(port),
    IMAGESWARM_TORRENT_PORT: '0',
    SI_BITTORRENT_CONF: join(layout.dir, 'bittorrent.conf'),
  }
}
