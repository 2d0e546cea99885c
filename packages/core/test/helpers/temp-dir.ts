import { mkdir, mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { onTestFinished } from 'vitest'

/** A fresh directory under the system temp dir, removed when the current test ends. */
export async function makeTempDir(prefix = 'imageswarm-archive-'): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix))
  onTestFinished(async () => {
    await rm(dir, { recursive: true, force: true })
  })
  return dir
}

/**
 * A temp dir (`dir`) holding an empty `target` to extract into and a `canary` directory
 * outside it, which nothing may ever be written into.
 */
export interface Sandbox {
  dir: string
  target: string
  canary: string
}

export async function makeSandbox(): Promise<Sandbox> {
  const dir = await makeTempDir()
  const target = join(dir, 'target')
  const canary = join(dir, 'canary')
  await mkdir(target)
  await mkdir(canary)
  return { dir, target, canary }
}
