import { mkdir, readdir, rename } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import {
  encodeGroupKeyFile,
  encodeNodeSecretFile,
  GROUP_KEY_DIRS,
  GROUP_NAME_PATTERN,
  generateGroupKey,
  generateNodeSecret,
  groupKeyFileName,
  ImageSwarmError,
  NODE_NAME_PATTERN,
  nodeSecretFileName,
  readGroupKey,
  readGroupKeys,
  readNodeSecret,
  writeNewFile,
} from '@imageswarm/core'
import type { Command } from 'commander'

/**
 * `imageswarm key group add|revoke|list` and `imageswarm key node add`: the group keys that
 * open encrypted archives and the node secrets that fetch them, in the server's group key
 * directory (`serve --group-keys DIR`; layout in GROUP_KEY_DIRS, docs/trust.md).
 */
interface GroupFlags {
  groupKeys: string
}

interface NodeAddFlags extends GroupFlags {
  group: string
  output: string
}

function addDirOption(command: Command): Command {
  return command.requiredOption(
    '--group-keys <dir>',
    'the group key directory (serve --group-keys DIR); made if missing',
  )
}

/** Registers `group …` and `node …` under `key`. */
export function addGroupKeyCommands(key: Command): void {
  const group = key
    .command('group')
    .description('make and revoke the node groups encrypted archives are wrapped for')
  addDirOption(
    group
      .command('add')
      .description('make a group key: the next encrypted version is wrapped for the group')
      .argument('<name>', 'the group name (imageswarm.group= on its nodes)'),
  ).action(async (name: string, flags: GroupFlags) => runGroupAdd(name, flags))
  addDirOption(
    group
      .command('revoke')
      .description(
        'revoke a group: its key is moved to revoked/, no longer handed out, and the next version (a new serial) is not wrapped for it',
      )
      .argument('<name>', 'the group name'),
  ).action(async (name: string, flags: GroupFlags) => runGroupRevoke(name, flags))
  addDirOption(
    group.command('list').description('show the current groups, their key ids and nodes'),
  ).action(async (flags: GroupFlags) => runGroupList(flags))

  const node = key.command('node').description('make the per-node secrets that fetch a group key')
  addDirOption(
    node
      .command('add')
      .description(
        "make a node's secret: one copy for the server (DIR/nodes/NODE.secret), one for the node (--output)",
      )
      .argument('<node>', 'the node name (its host name)')
      .requiredOption('--group <name>', 'the group the node is in')
      .requiredOption(
        '--output <file>',
        "the node's copy: put it into its ramdisk or onto a local disk (--node-secret-file)",
      ),
  ).action(async (name: string, flags: NodeAddFlags) => runNodeAdd(name, flags))
}

function usage(message: string, path: string, hint: string): ImageSwarmError {
  return new ImageSwarmError('E_USAGE', message, { path, hint })
}

async function runGroupAdd(name: string, flags: GroupFlags): Promise<void> {
  if (!GROUP_NAME_PATTERN.test(name)) {
    throw usage(`not a group name: ${JSON.stringify(name)}`, 'name', 'letters, digits, . _ + -')
  }
  const dir = resolve(flags.groupKeys)
  await mkdir(join(dir, GROUP_KEY_DIRS.nodes), { recursive: true, mode: 0o700 })
  const groupKey = generateGroupKey(name)
  const path = join(dir, groupKeyFileName(name))
  await writeNewFile(path, encodeGroupKeyFile(groupKey), 0o600)
  process.stdout.write(`group key     ${groupKey.keyId}  ${name}: ${path} (0600)\n`)
}

async function runGroupRevoke(name: string, flags: GroupFlags): Promise<void> {
  const dir = resolve(flags.groupKeys)
  const groupKey = await readGroupKey(dir, name)
  if (!groupKey) {
    throw usage(
      `group ${name} has no key in ${dir}`,
      'name',
      'imageswarm key group list --group-keys DIR shows the current groups',
    )
  }
  await mkdir(join(dir, GROUP_KEY_DIRS.revoked), { recursive: true, mode: 0o700 })
  const stamp = new Date().toISOString().replace(/[:.]/g, '-')
  const kept = join(dir, GROUP_KEY_DIRS.revoked, `${groupKeyFileName(name)}.${stamp}`)
  await rename(join(dir, groupKeyFileName(name)), kept)
  process.stdout.write(
    [
      `revoked group ${name} (key ${groupKey.keyId}), kept at ${kept}`,
      'The server stops handing its key out now; restart imageswarm serve (or publish) so the',
      'next version of each image gets a new archive key, not wrapped for it (a new serial).',
      '',
    ].join('\n'),
  )
}

async function runGroupList(flags: GroupFlags): Promise<void> {
  const dir = resolve(flags.groupKeys)
  const groups = await readGroupKeys(dir)
  const nodeFiles = await readdir(join(dir, GROUP_KEY_DIRS.nodes)).catch(() => [] as string[])
  const members = new Map<string, string[]>()
  for (const file of nodeFiles.filter((name) => name.endsWith('.secret')).sort()) {
    const secret = await readNodeSecret(dir, file.slice(0, -'.secret'.length))
    if (secret) members.set(secret.group, [...(members.get(secret.group) ?? []), secret.node])
  }
  for (const groupKey of groups) {
    const nodes = members.get(groupKey.group) ?? []
    process.stdout.write(
      `${groupKey.group}\t${groupKey.keyId}\t${nodes.length} node(s)${nodes.length ? `: ${nodes.join(', ')}` : ''}\n`,
    )
  }
}

async function runNodeAdd(name: string, flags: NodeAddFlags): Promise<void> {
  if (!NODE_NAME_PATTERN.test(name)) {
    throw usage(`not a node name: ${JSON.stringify(name)}`, 'node', 'a host name')
  }
  const dir = resolve(flags.groupKeys)
  if (!(await readGroupKey(dir, flags.group))) {
    throw usage(
      `group ${flags.group} has no key in ${dir}`,
      '--group',
      `make it first: imageswarm key group add ${flags.group} --group-keys ${flags.groupKeys}`,
    )
  }
  await mkdir(join(dir, GROUP_KEY_DIRS.nodes), { recursive: true, mode: 0o700 })
  const secret = generateNodeSecret(name, flags.group)
  const text = encodeNodeSecretFile(secret)
  // The node's copy first: a server copy without it would be a node that can never prove it.
  await writeNewFile(resolve(flags.output), text, 0o600)
  const serverCopy = join(dir, GROUP_KEY_DIRS.nodes, nodeSecretFileName(name))
  await writeNewFile(serverCopy, text, 0o600)
  process.stdout.write(
    `node secret   ${name} (group ${flags.group}): ${serverCopy}, ${resolve(flags.output)} (0600; give it to the node only)\n`,
  )
}
