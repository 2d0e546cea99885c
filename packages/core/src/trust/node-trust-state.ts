import { z } from 'zod'
import { ImageSwarmError } from '../errors.js'
import { IMAGE_NAME_PATTERN } from '../image-ref.js'

/**
 * What a node remembers of the signed images it installed, so that it refuses an older
 * image or key list later (rollback, docs/trust.md):
 *
 * - `/etc/imageswarm/installed.json` in the installed root (`InstalledImageRecord`): the
 *   image, its serial, infohash and SHA-256, the signing key and the key list it was
 *   accepted under. It is what the installed system (and an update of it) knows; an
 *   operator reads it to see what a node runs.
 * - `imageswarm-trust.json` on the image cache partition (`NodeTrustState`): per image the
 *   highest serial installed, and the highest key list version accepted. The installer wipes
 *   the target's disk, so this is the only record that survives into the next install of a
 *   bare disk.
 *
 * A node with neither (a first boot, no cache partition) starts from the floor it is
 * given: `imageswarm.min-serial=` and the key list version baked into its ramdisk.
 */

/** The record's path inside the installed root. */
export const INSTALLED_RECORD_PATH = 'etc/imageswarm/installed.json'

/** The node's trust state in the image cache's directory. */
export const CACHE_TRUST_STATE_FILE = 'imageswarm-trust.json'

const Sha256 = z.string().regex(/^[0-9a-f]{64}$/, 'expected 64 lowercase hex digits')
const Serial = z.number().int().positive().max(Number.MAX_SAFE_INTEGER)
const KeyListSeen = z.strictObject({ version: Serial, sha256: Sha256 })

export const InstalledImageRecordSchema = z.strictObject({
  type: z.literal('imageswarm-installed-image'),
  schemaVersion: z.literal(1),
  image: z.string().regex(IMAGE_NAME_PATTERN),
  serial: Serial,
  infoHash: z.string().regex(/^[0-9a-f]{40}$/),
  sha256: Sha256,
  /** The signing key whose signature the client checked; absent for an unsigned image. */
  signingKeyId: z
    .string()
    .regex(/^[0-9A-F]{16}$/)
    .optional(),
  /** The key list the signing key was accepted under; absent for an unsigned image. */
  keyList: KeyListSeen.optional(),
  installed: z.iso.datetime(),
  /** The image server it came from (for the operator: anyone could answer there). */
  server: z.string().max(2048),
})
export type InstalledImageRecord = z.output<typeof InstalledImageRecordSchema>

export const NodeTrustStateSchema = z.strictObject({
  type: z.literal('imageswarm-trust-state'),
  schemaVersion: z.literal(1),
  /** The highest key list version this node accepted, and that list's SHA-256. */
  keyList: KeyListSeen.optional(),
  /** Per image: the highest serial installed and when. */
  images: z.record(
    z.string().regex(IMAGE_NAME_PATTERN),
    z.strictObject({ serial: Serial, infoHash: z.string(), installed: z.iso.datetime() }),
  ),
})
export type NodeTrustState = z.output<typeof NodeTrustStateSchema>

/** The lowest a node accepts: what its records and its settings say, and where from. */
export interface TrustFloor {
  /** Refuse a manifest serial below this (E_ROLLBACK). */
  minSerial?: number
  /** Refuse a key list version below this (E_ROLLBACK). */
  minKeyListVersion?: number
  /** The SHA-256 of the list accepted at `minKeyListVersion`: another list under it is refused. */
  keyListSha256?: string
  /** What set each floor, for the operator (`cache imageswarm-trust.json: serial 7`). */
  reasons: string[]
}

/** A node's records and settings, for `trustFloor`. */
export interface TrustFloorInputs {
  image: string
  /** `imageswarm.min-serial=`. */
  minSerial?: number
  /** `imageswarm.min-key-list-version=` (or the ramdisk's). */
  minKeyListVersion?: number
  /** The cache's state and where it was read. */
  cacheState?: { state: NodeTrustState; path: string }
  /** The target root's record and where it was read (a root installed before, kept). */
  installed?: { record: InstalledImageRecord; path: string }
}

/**
 * The floor a node checks the server's key list and manifest against: for each, the highest
 * of what it recorded and what it was told.
 *
 * @example trustFloor({ image: 'compute', minSerial: 3, cacheState }) // { minSerial: 7, … }
 */
export function trustFloor(inputs: TrustFloorInputs): TrustFloor {
  const floor: TrustFloor = { reasons: [] }
  const serial = (value: number | undefined, reason: string) => {
    if (value === undefined || value <= (floor.minSerial ?? 0)) return
    floor.minSerial = value
    floor.reasons.push(`serial ${value} (${reason})`)
  }
  const keyList = (version: number | undefined, sha256: string | undefined, reason: string) => {
    if (version === undefined) return
    const current = floor.minKeyListVersion
    if (current === undefined || version > current) {
      floor.minKeyListVersion = version
      if (sha256 === undefined) delete floor.keyListSha256
      else floor.keyListSha256 = sha256
      floor.reasons.push(`key list version ${version} (${reason})`)
    } else if (version === current && floor.keyListSha256 === undefined && sha256 !== undefined) {
      // A recorded list pins its version: another list under the same version is refused.
      floor.keyListSha256 = sha256
      floor.reasons.push(`key list version ${version} (${reason})`)
    }
  }
  serial(inputs.minSerial, 'imageswarm.min-serial=')
  keyList(inputs.minKeyListVersion, undefined, 'imageswarm.min-key-list-version=')
  if (inputs.cacheState) {
    const { state, path } = inputs.cacheState
    serial(state.images[inputs.image]?.serial, path)
    keyList(state.keyList?.version, state.keyList?.sha256, path)
  }
  if (inputs.installed) {
    const { record, path } = inputs.installed
    if (record.image === inputs.image) serial(record.serial, path)
    if (record.keyList) keyList(record.keyList.version, record.keyList.sha256, path)
  }
  return floor
}

/**
 * What an install or update adds to a node's records: the image version the root holds
 * (`serial`), and, for a signed image, what its signature was checked under.
 */
export interface TrustedInstall {
  image: string
  serial: number
  infoHash: string
  sha256: string
  signingKeyId?: string
  keyList?: { version: number; sha256: string }
  installed: Date
  server: string
}

export function installedImageRecord(install: TrustedInstall): InstalledImageRecord {
  return {
    type: 'imageswarm-installed-image',
    schemaVersion: 1,
    image: install.image,
    serial: install.serial,
    infoHash: install.infoHash,
    sha256: install.sha256,
    ...(install.signingKeyId === undefined ? {} : { signingKeyId: install.signingKeyId }),
    ...(install.keyList === undefined ? {} : { keyList: { ...install.keyList } }),
    installed: install.installed.toISOString(),
    server: install.server,
  }
}

/**
 * The node's trust state after a verified install: never lower than before (a serial and a
 * key list version only go up).
 */
export function raiseTrustState(
  previous: NodeTrustState | undefined,
  install: TrustedInstall,
): NodeTrustState {
  const state: NodeTrustState = previous
    ? structuredClone(previous)
    : { type: 'imageswarm-trust-state', schemaVersion: 1, images: {} }
  if (install.keyList && (!state.keyList || install.keyList.version > state.keyList.version)) {
    state.keyList = { ...install.keyList }
  }
  const seen = state.images[install.image]
  if (!seen || install.serial >= seen.serial) {
    state.images[install.image] = {
      serial: install.serial,
      infoHash: install.infoHash,
      installed: install.installed.toISOString(),
    }
  }
  return state
}

/** The bytes of a record or state file: two-space JSON and a newline. */
export function encodeTrustRecord(value: InstalledImageRecord | NodeTrustState): string {
  return `${JSON.stringify(value, null, 2)}\n`
}

function damagedRecord(path: string, what: string): ImageSwarmError {
  return new ImageSwarmError('E_CONFIG_INVALID', `the node's trust record ${path} ${what}`, {
    operation: 'read trust record',
    path,
    hint: 'it is written by imageswarm alone: a damaged disk? Remove it only on purpose: the node then accepts any image and key list not below imageswarm.min-serial= and the ramdisk’s floor',
  })
}

function parseRecord<T>(schema: z.ZodType<T>, text: string, path: string): T {
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch {
    throw damagedRecord(path, 'is not JSON')
  }
  const result = schema.safeParse(value)
  if (result.success) return result.data
  const issue = result.error.issues[0]
  throw damagedRecord(
    path,
    `is invalid at ${issue?.path.join('.') || '(root)'}: ${issue?.message ?? 'invalid'}`,
  )
}

/** Parses the cache's `imageswarm-trust.json`; a damaged one is refused (fail closed). */
export function parseNodeTrustState(text: string, path: string): NodeTrustState {
  return parseRecord(NodeTrustStateSchema, text, path)
}

/** Parses `/etc/imageswarm/installed.json`; a damaged one is refused (fail closed). */
export function parseInstalledImageRecord(text: string, path: string): InstalledImageRecord {
  return parseRecord(InstalledImageRecordSchema, text, path)
}
