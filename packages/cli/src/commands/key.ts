import { existsSync } from 'node:fs'
import { mkdir, readdir } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import {
  checkNextKeyListVersion,
  encodePublicKeyFile,
  generateSecretKey,
  ImageSwarmError,
  isKeyId,
  KEY_FILES,
  KEY_LIST_TYPE,
  type KeyDirectory,
  type KeyList,
  type KeyListChange,
  nextKeyList,
  readKeyDirectory,
  readPassphraseFile,
  readSecretKeyFile,
  type SecretKey,
  signingKeyEntry,
  signingKeyFileNames,
  signingKeyStatus,
  signKeyList,
  usableSigningKeyFile,
  writeKeyList,
  writeNewFile,
  writeSecretKeyFile,
} from '@imageswarm/core'
import type { Command } from 'commander'
import { integerFlag } from '../options.js'
import { addGroupKeyCommands } from './key-group.js'
import { addTlsKeyCommands } from './key-tls.js'

/**
 * `imageswarm key …`: the root key, signing keys and the key list the root signs
 * (docs/trust.md). The commands that sign a key list need the root secret key; it lives
 * offline, so they take `--root-key FILE` (default DIR/root.key).
 */

/** A year: the key list must be renewed (one offline root signature) at least this often. */
const DEFAULT_KEY_LIST_DAYS = 365
const DAY_MS = 86_400_000

interface ExpiryFlags {
  expiresDays: number
  signingKeyDays?: number
}

export interface RootFlags {
  keys: string
  rootKey?: string
  rootKeyPassphraseFile?: string
}

export interface KeyGenerateFlags extends ExpiryFlags {
  output: string
  rootKey?: string
}

export interface KeyRotateFlags extends RootFlags, ExpiryFlags {
  retire: boolean
}

export interface KeyRevokeFlags extends RootFlags {
  expiresDays: number
}

export interface KeyListFlags {
  keys: string
  json: boolean
}

export function addExpiryOption(command: Command): Command {
  return command.option(
    '--expires-days <n>',
    'days until the new key list expires; renew it before (imageswarm key renew)',
    integerFlag('--expires-days', 1, 3650),
    DEFAULT_KEY_LIST_DAYS,
  )
}

function addSigningKeyDaysOption(command: Command): Command {
  return command.option(
    '--signing-key-days <n>',
    'days the new signing key is accepted (default: until it is retired or revoked)',
    integerFlag('--signing-key-days', 1, 3650),
  )
}

export function addRootOptions(command: Command): Command {
  return command
    .requiredOption('--keys <dir>', 'the key directory (imageswarm key generate --output DIR)')
    .option(
      '--root-key <file>',
      'the root secret key, e.g. on offline media (default DIR/root.key)',
    )
    .option(
      '--root-key-passphrase-file <file>',
      'passphrase of an encrypted root key (openssl pkcs8 -topk8 -scrypt)',
    )
}

/** Registers `key generate|rotate|revoke|renew|list|tls-generate|tls-pin` and the group
 * key commands under `program`. */
export function addKeyCommands(program: Command): void {
  const key = program
    .command('key')
    .description('make and manage the keys that sign images (see docs/trust.md)')

  addSigningKeyDaysOption(
    addExpiryOption(
      key
        .command('generate')
        .description(
          'make a root key, a first signing key and the key list the root signs, in a new directory',
        )
        .requiredOption('--output <dir>', 'directory for the keys (made if missing)')
        .option(
          '--root-key <file>',
          'write the root secret key here, e.g. on offline media (default DIR/root.key)',
        ),
    ),
  ).action(async (flags: KeyGenerateFlags) => runKeyGenerate(flags))

  addSigningKeyDaysOption(
    addExpiryOption(
      addRootOptions(
        key
          .command('rotate')
          .description('add a new signing key in a new key list; the old keys stay listed')
          .option('--retire', 'take the older signing keys off the new key list', false),
      ),
    ),
  ).action(async (flags: KeyRotateFlags) => runKeyRotate(flags))

  addExpiryOption(
    addRootOptions(
      key
        .command('revoke')
        .description('revoke a signing key in a new key list: nodes refuse what it signed')
        .argument('<key-id>', 'the signing key id (16 hex digits, as key list shows it)'),
    ),
  ).action(async (keyId: string, flags: KeyRevokeFlags) => runKeyRevoke(keyId, flags))

  addExpiryOption(
    addRootOptions(
      key.command('renew').description('sign the key list again, unchanged, with a new expiry'),
    ),
  ).action(async (flags: KeyRevokeFlags) => runKeyRenew(flags))

  key
    .command('list')
    .description('show the key list and the keys in a key directory')
    .requiredOption('--keys <dir>', 'the key directory')
    .option('--json', 'print JSON', false)
    .action(async (flags: KeyListFlags) => runKeyList(flags))

  addTlsKeyCommands(key)
  addGroupKeyCommands(key)
}

export function daysFrom(now: Date, days: number): Date {
  return new Date(now.getTime() + days * DAY_MS)
}

export function print(lines: string[]): void {
  process.stdout.write(`${lines.join('\n')}\n`)
}

/** `imageswarm key generate`: never writes over a key; refuses before writing anything. */
export async function runKeyGenerate(flags: KeyGenerateFlags, now = new Date()): Promise<void> {
  const dir = resolve(flags.output)
  const rootKeyPath = resolve(flags.rootKey ?? join(dir, KEY_FILES.rootSecretKey))
  const signingFiles = signingKeyFileNames(1)
  const planned = [
    rootKeyPath,
    join(dir, KEY_FILES.rootPublicKey),
    join(dir, signingFiles.secretKey),
    join(dir, signingFiles.publicKey),
    join(dir, KEY_FILES.keyList),
    join(dir, KEY_FILES.keyListSignature),
  ]
  const present = planned.filter((path) => existsSync(path))
  if (present.length > 0) {
    throw new ImageSwarmError('E_KEYS_EXIST', `keys exist already: ${present.join(', ')}`, {
      operation: 'generate keys',
      path: present[0],
      hint: 'imageswarm never replaces a key: choose another --output, or use imageswarm key rotate --keys DIR to add a signing key',
    })
  }
  // The directory holds signing secret keys: only its owner may list or enter it.
  await mkdir(dir, { recursive: true, mode: 0o700 })

  const root = generateSecretKey()
  const signing = generateSecretKey()
  await writeSecretKeyFile(rootKeyPath, root, 'root', now)
  await writeNewFile(
    join(dir, KEY_FILES.rootPublicKey),
    encodePublicKeyFile(root.publicKey, `minisign public key ${root.keyId} (imageswarm root)`),
    0o644,
  )
  await writeSigningKey(dir, 1, signing, now)
  const keyList: KeyList = {
    type: KEY_LIST_TYPE,
    schemaVersion: 1,
    version: 1,
    created: now.toISOString(),
    expires: daysFrom(now, flags.expiresDays).toISOString(),
    rootKeyId: root.keyId,
    signingKeys: [signingKeyEntry(signing.publicKey, now, signingNotAfter(flags, now))],
    revokedKeyIds: [],
  }
  await writeKeyList(dir, signKeyList(keyList, root))
  print([
    `root key      ${root.keyId}  ${join(dir, KEY_FILES.rootPublicKey)} (into the installer ramdisk)`,
    `              secret: ${rootKeyPath} (0600; keep it offline)`,
    `signing key   ${signing.keyId}  ${join(dir, signingFiles.publicKey)}, ${join(dir, signingFiles.secretKey)} (0600)`,
    `key list      version 1, expires ${keyList.expires}: ${join(dir, KEY_FILES.keyList)}, ${join(dir, KEY_FILES.keyListSignature)}`,
  ])
}

function signingNotAfter(flags: ExpiryFlags, now: Date): Date | undefined {
  return flags.signingKeyDays === undefined ? undefined : daysFrom(now, flags.signingKeyDays)
}

async function writeSigningKey(
  dir: string,
  number: number,
  key: SecretKey,
  now: Date,
): Promise<void> {
  const files = signingKeyFileNames(number)
  await writeSecretKeyFile(join(dir, files.secretKey), key, `signing-${number}`, now)
  await writeNewFile(
    join(dir, files.publicKey),
    encodePublicKeyFile(
      key.publicKey,
      `minisign public key ${key.keyId} (imageswarm signing-${number})`,
    ),
    0o644,
  )
}

/** The key directory (an expired key list is read: rotating or renewing is how it is fixed). */
function openKeys(flags: { keys: string }, now: Date): Promise<KeyDirectory> {
  return readKeyDirectory(resolve(flags.keys), { now, allowExpired: true })
}

/** The key directory, checked before anything is written that the next key list follows. */
export async function openKeysToChange(flags: { keys: string }, now: Date): Promise<KeyDirectory> {
  const keys = await openKeys(flags, now)
  await checkNextKeyListVersion(keys)
  return keys
}

/** Loads the root secret key and checks it is the root of this directory. */
export async function loadRootKey(flags: RootFlags, keys: KeyDirectory): Promise<SecretKey> {
  const path = resolve(flags.rootKey ?? join(keys.dir, KEY_FILES.rootSecretKey))
  const passphrase =
    flags.rootKeyPassphraseFile === undefined
      ? undefined
      : await readPassphraseFile(flags.rootKeyPassphraseFile)
  const root = await readSecretKeyFile(path, passphrase)
  if (
    root.keyId !== keys.rootPublicKey.keyId ||
    !root.publicKey.raw.equals(keys.rootPublicKey.raw)
  ) {
    throw new ImageSwarmError(
      'E_KEY_FILE_INVALID',
      `${path} is key ${root.keyId}, not the root key ${keys.rootPublicKey.keyId} of ${keys.dir}`,
      {
        operation: 'load root key',
        path,
        hint: `give the root secret key that belongs to ${join(keys.dir, KEY_FILES.rootPublicKey)} with --root-key FILE`,
      },
    )
  }
  return root
}

export async function signNext(
  keys: KeyDirectory,
  root: SecretKey,
  change: KeyListChange,
): Promise<KeyList> {
  const signed = signKeyList(nextKeyList(keys.keyList, change), root)
  await writeKeyList(keys.dir, signed)
  return signed.keyList
}

/** `imageswarm key rotate`: a new signing key, listed beside the old ones (or instead, --retire). */
export async function runKeyRotate(flags: KeyRotateFlags, now = new Date()): Promise<void> {
  const keys = await openKeysToChange(flags, now)
  const root = await loadRootKey(flags, keys)
  const number = Math.max(0, ...(await signingKeyNumbers(keys.dir))) + 1
  const signing = generateSecretKey()
  await writeSigningKey(keys.dir, number, signing, now)
  const retired = flags.retire ? keys.keyList.signingKeys.map((entry) => entry.keyId) : []
  const keyList = await signNext(keys, root, {
    now,
    expires: daysFrom(now, flags.expiresDays),
    add: [signingKeyEntry(signing.publicKey, now, signingNotAfter(flags, now))],
    remove: retired,
  })
  print([
    `signing key   ${signing.keyId}  ${join(keys.dir, signingKeyFileNames(number).publicKey)} (the server signs with it from now on)`,
    `key list      version ${keyList.version}, expires ${keyList.expires}`,
    retired.length > 0
      ? `retired       ${retired.join(', ')} (manifests they signed are refused once nodes have this list)`
      : `still listed  ${keys.keyList.signingKeys.map((entry) => entry.keyId).join(', ') || 'none'} (retire them with key rotate --retire once every manifest is signed again)`,
  ])
}

/** Every N of a `signing-N.pub` or `signing-N.key` in the directory, so N is never reused. */
async function signingKeyNumbers(dir: string): Promise<number[]> {
  return (await readdir(dir))
    .map((name) => /^signing-([1-9][0-9]{0,8})\.(pub|key)$/.exec(name)?.[1])
    .filter((number) => number !== undefined)
    .map(Number)
}

/** `imageswarm key revoke KEYID`. */
export async function runKeyRevoke(
  keyIdArgument: string,
  flags: KeyRevokeFlags,
  now = new Date(),
): Promise<void> {
  const keyId = keyIdArgument.toUpperCase()
  if (!isKeyId(keyId)) {
    throw new ImageSwarmError('E_USAGE', `${JSON.stringify(keyIdArgument)} is not a key id`, {
      path: '<key-id>',
      hint: 'a key id is 16 hex digits: imageswarm key list --keys DIR shows them',
    })
  }
  const keys = await openKeysToChange(flags, now)
  if (keyId === keys.rootPublicKey.keyId) {
    throw new ImageSwarmError('E_USAGE', `${keyId} is the root key`, {
      path: '<key-id>',
      hint: 'a key list cannot revoke the root that signs it: make new keys (key generate) and a new installer ramdisk with the new root.pub',
    })
  }
  if (keys.keyList.revokedKeyIds.includes(keyId)) {
    throw new ImageSwarmError(
      'E_USAGE',
      `key ${keyId} is revoked already (key list version ${keys.keyList.version})`,
      { path: '<key-id>', hint: 'nothing to do' },
    )
  }
  const listed = keys.keyList.signingKeys.some((entry) => entry.keyId === keyId)
  const inDirectory = keys.signingKeyFiles.some((file) => file.publicKey.keyId === keyId)
  if (!listed && !inDirectory) {
    throw new ImageSwarmError(
      'E_USAGE',
      `key ${keyId} is neither in key list version ${keys.keyList.version} nor in ${keys.dir}`,
      {
        path: '<key-id>',
        hint: 'check the id with imageswarm key list --keys DIR (a key that is not listed is refused by nodes already)',
      },
    )
  }
  const root = await loadRootKey(flags, keys)
  const keyList = await signNext(keys, root, {
    now,
    expires: daysFrom(now, flags.expiresDays),
    revoke: [keyId],
  })
  const lines = [
    `revoked       ${keyId}`,
    `key list      version ${keyList.version}, expires ${keyList.expires}: publish it; nodes refuse what ${keyId} signed once they have it`,
  ]
  if (keyList.signingKeys.length === 0) {
    lines.push('warning       no signing key is left: imageswarm key rotate --keys DIR makes one')
  }
  print(lines)
}

/** `imageswarm key renew`: the same keys, a new version and expiry. */
export async function runKeyRenew(flags: KeyRevokeFlags, now = new Date()): Promise<void> {
  const keys = await openKeysToChange(flags, now)
  const root = await loadRootKey(flags, keys)
  const keyList = await signNext(keys, root, { now, expires: daysFrom(now, flags.expiresDays) })
  print([`key list      version ${keyList.version}, expires ${keyList.expires}`])
}

/** One signing key as `key list` shows it. */
interface SigningKeyView {
  file: string | null
  keyId: string
  status: ReturnType<typeof signingKeyStatus>
  signs: boolean
  hasSecretKey: boolean
  added: string | null
  notAfter: string | null
}

/** `imageswarm key list`. */
export async function runKeyList(flags: KeyListFlags, now = new Date()): Promise<void> {
  const keys = await openKeys(flags, now)
  const { keyList } = keys
  const signer = usableSigningKeyFile(keys, now)
  const views: SigningKeyView[] = keys.signingKeyFiles.map((file) => {
    const entry = keyList.signingKeys.find((key) => key.keyId === file.publicKey.keyId)
    return {
      file: `signing-${file.number}`,
      keyId: file.publicKey.keyId,
      status: signingKeyStatus(keyList, file.publicKey.keyId, now),
      signs: file === signer,
      hasSecretKey: file.hasSecretKey,
      added: entry?.added ?? null,
      notAfter: entry?.notAfter ?? null,
    }
  })
  for (const entry of keyList.signingKeys) {
    if (views.some((view) => view.keyId === entry.keyId)) continue
    views.push({
      file: null,
      keyId: entry.keyId,
      status: signingKeyStatus(keyList, entry.keyId, now),
      signs: false,
      hasSecretKey: false,
      added: entry.added,
      notAfter: entry.notAfter ?? null,
    })
  }
  const expired = Date.parse(keyList.expires) <= now.getTime()
  if (flags.json) {
    process.stdout.write(
      `${JSON.stringify({ dir: keys.dir, rootKeyId: keys.rootPublicKey.keyId, expired, keyList, signingKeys: views }, null, 2)}\n`,
    )
    return
  }
  print([
    `keys in       ${keys.dir}`,
    `root key      ${keys.rootPublicKey.keyId}`,
    `key list      version ${keyList.version}, created ${keyList.created}, expires ${keyList.expires}${expired ? ' (EXPIRED: renew it)' : ''}`,
    'signing keys',
    ...views.map(
      (view) =>
        `  ${(view.file ?? '(elsewhere)').padEnd(12)} ${view.keyId}  ${view.status}${view.signs ? ', signs' : ''}${view.notAfter ? `, until ${view.notAfter}` : ''}${view.file !== null && !view.hasSecretKey ? ' (no .key here)' : ''}`,
    ),
    `revoked       ${keyList.revokedKeyIds.join(', ') || 'none'}`,
    `tls pins      ${keyList.tlsCertificates?.map((pin) => pin.sha256).join(', ') || 'none'}`,
  ])
}
