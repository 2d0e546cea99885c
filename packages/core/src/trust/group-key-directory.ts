import { readdir, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { errnoOf, ImageSwarmError } from '../errors.js'
import { GROUP_NAME_PATTERN, type GroupKey, parseGroupKeyFile } from './archive-key.js'
import { NODE_NAME_PATTERN, type NodeSecret, parseNodeSecretFile } from './group-key-delivery.js'

/**
 * The server's directory of group keys (`serve --group-keys DIR`, `imageswarm key group
 * add NAME --group-keys DIR`):
 *
 * ```
 * DIR/NAME.key              a group key (0600): every current group's archive key wrapping
 * DIR/nodes/NODE.secret     a node's secret and group (0600): who may fetch which group key
 * DIR/revoked/NAME.key.TIME a revoked group's key, kept for the record, never used
 * ```
 */
export const GROUP_KEY_DIRS = { nodes: 'nodes', revoked: 'revoked' } as const

export function groupKeyFileName(group: string): string {
  return `${group}.key`
}

export function nodeSecretFileName(node: string): string {
  return `${node}.secret`
}

/** Every current group's key, sorted by name; a file that is not a group key stops it. */
export async function readGroupKeys(dir: string): Promise<GroupKey[]> {
  let names: string[]
  try {
    names = await readdir(dir)
  } catch (err) {
    throw new ImageSwarmError(
      'E_KEY_FILE_INVALID',
      `group key directory ${dir} cannot be read (${errnoOf(err) ?? String(err)})`,
      {
        operation: 'read group keys',
        path: dir,
        hint: 'make it with imageswarm key group add NAME --group-keys DIR',
        cause: err,
      },
    )
  }
  const keys: GroupKey[] = []
  for (const name of names.filter((file) => file.endsWith('.key')).sort()) {
    const path = join(dir, name)
    const key = parseGroupKeyFile(await readFile(path, 'utf8'), path)
    if (groupKeyFileName(key.group) !== name) {
      throw new ImageSwarmError(
        'E_KEY_FILE_INVALID',
        `group key ${path} holds group ${key.group}`,
        {
          operation: 'read group keys',
          path,
          hint: `a group's key is DIR/${groupKeyFileName(key.group)}: rename it`,
        },
      )
    }
    keys.push(key)
  }
  return keys
}

/** One group's current key; undefined when there is none (never made, or revoked). */
export async function readGroupKey(dir: string, group: string): Promise<GroupKey | undefined> {
  if (!GROUP_NAME_PATTERN.test(group)) return undefined
  const path = join(dir, groupKeyFileName(group))
  let text: string
  try {
    text = await readFile(path, 'utf8')
  } catch (err) {
    if (errnoOf(err) === 'ENOENT') return undefined
    throw err
  }
  const key = parseGroupKeyFile(text, path)
  return key.group === group ? key : undefined
}

/** A node's secret as the server holds it; undefined for a node it does not know. */
export async function readNodeSecret(dir: string, node: string): Promise<NodeSecret | undefined> {
  if (!NODE_NAME_PATTERN.test(node)) return undefined
  const path = join(dir, GROUP_KEY_DIRS.nodes, nodeSecretFileName(node))
  let text: string
  try {
    text = await readFile(path, 'utf8')
  } catch (err) {
    if (errnoOf(err) === 'ENOENT') return undefined
    throw err
  }
  const secret = parseNodeSecretFile(text, path)
  return secret.node === node ? secret : undefined
}
