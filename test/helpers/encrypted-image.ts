import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { main } from '@imageswarm/cli'
import { addSampleImage, makeServerLayout, type ServerLayout } from './workspace.js'

/** A string in the image's plaintext that no ciphertext, cache or capture may hold. */
export const MARKER = 'IMAGESWARM-SECRET-MARKER-4e1f7a'

/**
 * `imageswarm ARGS` in this process (the CLI's own `main`, as the binary runs it): the key
 * commands without a Node start each, which on a loaded machine took seconds apiece.
 * Throws on a non-zero exit.
 */
export async function imageswarmInProcess(args: string[]): Promise<void> {
  const code = await main(args)
  if (code !== 0) throw new Error(`imageswarm ${args.join(' ')}: exit ${code}`)
}

export interface EncryptedImageLayout {
  layout: ServerLayout
  /** `imageswarm key generate --output` (root.pub is the nodes' trust root). */
  keys: string
  /** `serve --group-keys`. */
  groupKeys: string
  /** Each node's secret file (`--node-secret-file`), by node name. */
  secrets: Record<string, string>
  /** `imageswarm serve` flags that encrypt the image uncompressed, signed with `keys`. */
  serveArgs: string[]
}

/**
 * A server layout with image `node` (the sample image plus MARKER in etc/), signing keys,
 * group keys for `groups` and a secret for each of `nodes` ([name, group]). Uncompressed
 * (`--compression none`): the plaintext archive would hold the marker as is, so finding
 * none anywhere means the bytes were encrypted, not merely compressed.
 */
export async function makeEncryptedImageLayout(
  prefix: string,
  groups: readonly string[],
  nodes: readonly (readonly [string, string])[],
): Promise<EncryptedImageLayout> {
  const layout = await makeServerLayout(prefix)
  try {
    await addSampleImage(layout, 'node')
    await writeFile(join(layout.imagesDir, 'node', 'etc', 'shadow-marker'), `${MARKER}\n`)
    const keys = join(layout.dir, 'keys')
    await imageswarmInProcess(['key', 'generate', '--output', keys])
    const groupKeys = join(layout.dir, 'group-keys')
    for (const group of groups) {
      await imageswarmInProcess(['key', 'group', 'add', group, '--group-keys', groupKeys])
    }
    const secrets: Record<string, string> = {}
    for (const [node, group] of nodes) {
      secrets[node] = join(layout.dir, `${node}.secret`)
      await imageswarmInProcess([
        'key',
        'node',
        'add',
        node,
        '--group',
        group,
        '--group-keys',
        groupKeys,
        '--output',
        secrets[node],
      ])
    }
    const serveArgs = [
      '--keys',
      keys,
      '--encrypt',
      '--group-keys',
      groupKeys,
      '--compression',
      'none',
    ]
    return { layout, keys, groupKeys, secrets, serveArgs }
  } catch (err) {
    await layout.remove()
    throw err
  }
}
