import { mkdir, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { extractArchive, packArchive } from '../src/index.js'
import { compareTrees } from '../src/testing/compare-trees.js'
import { buildFidelityTree, FIDELITY_COMMANDS, SPARSE_SIZE } from '../src/testing/fixture-tree.js'
import { missingRequirements } from '../src/testing/system-tools.js'
import { makeTempDir } from './helpers/temp-dir.js'

const skipReason = missingRequirements(FIDELITY_COMMANDS)
const title = (name: string) =>
  skipReason === undefined ? name : `${name} (skipped: ${skipReason})`

describe('archive fidelity on a real Linux root', { timeout: 60_000 }, () => {
  for (const compression of ['zstd', 'gzip', 'none'] as const) {
    it.skipIf(skipReason !== undefined)(
      title(`restores every kind of metadata exactly (${compression})`),
      async () => {
        const dir = await makeTempDir()
        const root = join(dir, 'root')
        const { sparse } = await buildFidelityTree(root)
        const archive = join(dir, `image.tar`)
        await packArchive({ root, output: archive, compression })
        const target = join(dir, 'target')
        await mkdir(target)
        await extractArchive({ archive, target })

        expect(await compareTrees(root, target)).toEqual([])
        const restored = await stat(join(target, sparse))
        expect(restored.size).toBe(SPARSE_SIZE)
        // 8 KiB written; allow for file system overhead but nowhere near 64 MiB.
        expect(restored.blocks * 512).toBeLessThan(256 * 1024)
      },
      60_000,
    )
  }
})
