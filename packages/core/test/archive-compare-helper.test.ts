import { chmod, lchown, mkdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { compareTrees, snapshotTree } from '../src/testing/compare-trees.js'
import { buildFidelityTree, FIDELITY_COMMANDS } from '../src/testing/fixture-tree.js'
import { missingRequirements, run } from '../src/testing/system-tools.js'
import { makeTempDir } from './helpers/temp-dir.js'

const skipReason = missingRequirements(FIDELITY_COMMANDS)
const title = (name: string) =>
  skipReason === undefined ? name : `${name} (skipped: ${skipReason})`

// The fidelity tests pass when compareTrees finds nothing; this makes sure it would find it.
describe('compareTrees (test helper)', { timeout: 60_000 }, () => {
  it.skipIf(skipReason !== undefined)(
    title('sees xattrs, capabilities, ACLs and nanosecond mtimes in a snapshot'),
    async () => {
      const dir = await makeTempDir()
      await buildFidelityTree(join(dir, 'a'))
      const nodes = await snapshotTree(join(dir, 'a'))
      expect(nodes.get('etc/hostname')?.xattrs).toContain('user.binary=0x00ff10800a')
      expect(nodes.get('usr/share')?.xattrs).toContain('trusted.overlay=0x79')
      expect(nodes.get('bin/ping')?.xattrs).toContain('security.capability=')
      expect(nodes.get('srv/acl-file')?.acl).toContain('user:3000000:rwx')
      expect(nodes.get('srv')?.acl).toContain('default:user:100:rwx')
      expect(nodes.get('etc/hostname')?.mtimeNs).toBe(1_700_000_000_123_456_789n)
      expect(nodes.get('etc/empty')?.mtimeNs).toBe(-1_234_567_890_500_000_000n)
      expect(nodes.get('var/tmp/owned-3000000')?.uid).toBe(3_000_000)
    },
    30_000,
  )

  it.skipIf(skipReason !== undefined)(
    title('reports each kind of difference'),
    async () => {
      const dir = await makeTempDir()
      const a = join(dir, 'a')
      const b = join(dir, 'b')
      for (const root of [a, b]) {
        await mkdir(join(root, 'd'), { recursive: true })
        await writeFile(join(root, 'd/f'), 'same')
        await writeFile(join(root, 'g'), 'same')
        await run('touch', [
          '-d',
          '@1000.000000001',
          join(root, 'd/f'),
          join(root, 'g'),
          join(root, 'd'),
          root,
        ])
      }
      expect(await compareTrees(a, b)).toEqual([])
      await chmod(join(b, 'g'), 0o600)
      await lchown(join(b, 'd/f'), 5, 5)
      await run('setfattr', ['-n', 'user.x', '-v', '1', join(b, 'd/f')])
      await run('touch', ['-d', '@1000.000000002', join(b, 'd/f'), join(b, 'g')])
      await run('touch', ['-d', '@1000.000000001', join(b, 'd'), b])
      const diffs = await compareTrees(a, b)
      expect(diffs.join('\n')).toMatch(/"g": mode/)
      expect(diffs.join('\n')).toMatch(/"d\/f": uid/)
      expect(diffs.join('\n')).toMatch(/"d\/f": xattrs/)
      expect(diffs.join('\n')).toMatch(/"d\/f": mtimeNs/)
    },
    30_000,
  )
})
