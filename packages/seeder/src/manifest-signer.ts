import { stat } from 'node:fs/promises'
import { join } from 'node:path'
import {
  type ImageManifest,
  ImageSwarmError,
  KEY_FILES,
  type KeyDirectory,
  type KeyList,
  type Logger,
  loadSigningKey,
  type NodeInstallConfig,
  readKeyDirectory,
  type SecretKey,
  signManifest,
  signNodeConfig,
  silentLogger,
} from '@imageswarm/core'

/**
 * How long a signed manifest is accepted: a week. A replayed manifest (an image with a
 * known hole, served by someone in the way) is refused a week after it was signed at most;
 * a running server signs again at half the lifetime, so a node never sees one that has
 * less than half of it left. A shorter lifetime narrows the replay window and costs one
 * signature (well under a millisecond) per image per half-lifetime.
 */
export const DEFAULT_MANIFEST_LIFETIME_SECONDS = 7 * 24 * 60 * 60

/** A manifest as the server serves it: its exact bytes and, when signed, its signature. */
export interface SignedManifestFiles {
  manifest: ImageManifest
  bytes: Buffer
  signature: string
  signingKeyId: string
}

/**
 * The serial of a publication, which is also the image's version number (issue 16): the
 * previous manifest's, plus one when the archive changed (another SHA-256 or infohash); 1
 * for the first publication, or the first since a manifest without one.
 *
 * @example nextSerial({ serial: 7, sha256: 'a…', infoHash: 'b…' }, { sha256: 'c…', infoHash: 'd…' }) // 8
 */
export function nextSerial(
  previous: Pick<ImageManifest, 'serial' | 'sha256' | 'infoHash'> | undefined,
  archive: Pick<ImageManifest, 'sha256' | 'infoHash'>,
): number {
  if (previous?.serial === undefined) return 1
  const same = previous.sha256 === archive.sha256 && previous.infoHash === archive.infoHash
  return same ? previous.serial : previous.serial + 1
}

/** What identifies the key list files on disk: a key command replaces them (rename). */
async function keyListStamp(dir: string): Promise<string> {
  const parts: string[] = []
  for (const name of [KEY_FILES.keyList, KEY_FILES.keyListSignature]) {
    const st = await stat(join(dir, name), { bigint: true }).catch(() => undefined)
    parts.push(st ? `${st.ino}:${st.size}:${st.mtimeNs}` : 'missing')
  }
  return parts.join('/')
}

export interface ManifestSignerOptions {
  /** The key directory (`imageswarm key generate --output DIR`), without root.key. */
  keys: string
  /** Seconds a manifest is accepted after signing (`--manifest-lifetime`). */
  manifestLifetime: number
  logger?: Logger
  /** The clock; tests give their own. */
  now?: () => Date
}

/**
 * The server's signing side (`serve --keys DIR`, `publish --keys DIR`): the key list from
 * DIR, verified against DIR/root.pub, served verbatim at `/keys.json`; the newest signing
 * key the list accepts; manifests signed with it, each valid for `manifestLifetime`.
 * `reloadIfChanged` picks up a new key list (rotate, revoke, renew) without a restart.
 */
export class ManifestSigner {
  readonly #options: ManifestSignerOptions
  readonly #logger: Logger
  readonly #now: () => Date
  #keys: KeyDirectory
  #signingKey: SecretKey | undefined
  #stamp: string
  /** The key list files as last seen unusable: said once, not at every look. */
  #refusedStamp: string | undefined
  #expiryLogged = false

  private constructor(
    options: ManifestSignerOptions,
    keys: KeyDirectory,
    signingKey: SecretKey,
    stamp: string,
  ) {
    this.#options = options
    this.#logger = options.logger ?? silentLogger()
    this.#now = options.now ?? (() => new Date())
    this.#keys = keys
    this.#signingKey = signingKey
    this.#stamp = stamp
  }

  /**
   * Reads the key directory and loads its signing key. A directory whose key list does not
   * verify, has expired, or accepts none of its signing keys is refused here, before the
   * server publishes anything.
   */
  static async open(options: ManifestSignerOptions): Promise<ManifestSigner> {
    const now = options.now?.() ?? new Date()
    const stamp = await keyListStamp(options.keys)
    const keys = await readKeyDirectory(options.keys, { now })
    const signingKey = await loadSigningKey(keys, now)
    const signer = new ManifestSigner(options, keys, signingKey, stamp)
    signer.#logger.info(
      {
        keys: options.keys,
        keyListVersion: keys.keyList.version,
        keyListExpires: keys.keyList.expires,
        signingKey: signingKey.keyId,
        manifestLifetime: options.manifestLifetime,
      },
      'signing manifests',
    )
    signer.#warnIfKeyListExpiresSoon()
    return signer
  }

  get keyList(): KeyList {
    return this.#keys.keyList
  }

  /** `keys.json` as the root signed it, byte for byte. */
  get keyListBytes(): Buffer {
    return this.#keys.keyListBytes
  }

  get keyListSignature(): string {
    return this.#keys.keyListSignature
  }

  /** The key manifests are signed with now; undefined when the key list accepts none. */
  get signingKeyId(): string | undefined {
    return this.#signingKey?.keyId
  }

  get manifestLifetime(): number {
    return this.#options.manifestLifetime
  }

  /**
   * Signs a manifest under `serial`, expiring `manifestLifetime` from now: its bytes (what
   * is written and served) and the `.minisig`.
   */
  sign(manifest: ImageManifest, serial: number): SignedManifestFiles {
    const key = this.#signingKey
    if (!key) {
      throw new ImageSwarmError(
        'E_KEY_FILE_INVALID',
        `${this.#options.keys} holds no signing key that key list version ${this.keyList.version} accepts`,
        {
          operation: 'sign manifest',
          path: this.#options.keys,
          hint: 'make one with imageswarm key rotate --keys DIR --root-key FILE and copy the directory back',
        },
      )
    }
    const expires = new Date(this.#now().getTime() + this.#options.manifestLifetime * 1000)
    const signed: ImageManifest = { ...manifest, serial, expires: expires.toISOString() }
    const { bytes, signature } = signManifest(signed, key)
    return { manifest: signed, bytes, signature, signingKeyId: key.keyId }
  }

  /**
   * Signs a node config (`/install/node.json`) that carries its binding, with the key that
   * signs manifests: its bytes and `.minisig`; undefined while the key list accepts no key.
   */
  signNodeConfig(config: NodeInstallConfig): { bytes: Buffer; signature: string } | undefined {
    return this.#signingKey && signNodeConfig(config, this.#signingKey)
  }

  /**
   * Whether a manifest this server serves must be signed again: signed by another key than
   * the current one, unsigned, or past half of its lifetime.
   */
  isDue(manifest: ImageManifest, signingKeyId: string | undefined): boolean {
    if (!this.#signingKey) return false
    if (signingKeyId !== this.#signingKey.keyId || manifest.expires === undefined) return true
    const left = Date.parse(manifest.expires) - this.#now().getTime()
    return left <= (this.#options.manifestLifetime * 1000) / 2
  }

  /**
   * Reads the key directory again when keys.json or its signature changed on disk, and
   * returns true when a new key list was taken. A list that does not verify yet (a key
   * command writes the signature, then the list), is older than the one in use or has
   * expired is logged and left: the next call tries again. A list that accepts none of the
   * directory's keys is taken (nodes must see a revocation) and logged as an error.
   */
  async reloadIfChanged(): Promise<boolean> {
    const stamp = await keyListStamp(this.#options.keys)
    if (stamp === this.#stamp) return false
    const now = this.#now()
    let keys: KeyDirectory
    try {
      keys = await readKeyDirectory(this.#options.keys, { now })
    } catch (err) {
      if (this.#refusedStamp !== stamp) {
        this.#refusedStamp = stamp
        this.#logger.warn(
          { keys: this.#options.keys, err: err instanceof Error ? err.message : String(err) },
          'the key directory changed but cannot be used (yet); serving the previous key list',
        )
      }
      return false
    }
    this.#stamp = stamp
    if (keys.keyList.version < this.keyList.version) {
      this.#logger.error(
        { keys: this.#options.keys, found: keys.keyList.version, serving: this.keyList.version },
        'the key directory holds an older key list than the one served: ignoring it (nodes that saw the newer one would refuse it); copy the newest keys.json back',
      )
      return false
    }
    let signingKey: SecretKey | undefined
    try {
      signingKey = await loadSigningKey(keys, now)
    } catch (err) {
      signingKey = undefined
      this.#logger.error(
        { keys: this.#options.keys, err: err instanceof Error ? err.message : String(err) },
        'the new key list accepts none of the signing keys here: nodes will refuse this server’s manifests until one is added (imageswarm key rotate)',
      )
    }
    this.#keys = keys
    this.#signingKey = signingKey
    this.#expiryLogged = false
    this.#logger.info(
      {
        keyListVersion: keys.keyList.version,
        keyListExpires: keys.keyList.expires,
        signingKey: signingKey?.keyId ?? null,
        revoked: keys.keyList.revokedKeyIds,
      },
      'key list changed',
    )
    this.#warnIfKeyListExpiresSoon()
    return true
  }

  /**
   * Says once, as an error, that the key list in use has expired: every node refuses this
   * server's images (E_KEYLIST_EXPIRED) until a renewed one is copied in.
   */
  checkKeyListExpiry(): void {
    if (this.#expiryLogged || Date.parse(this.keyList.expires) > this.#now().getTime()) return
    this.#expiryLogged = true
    this.#logger.error(
      { keyListVersion: this.keyList.version, keyListExpires: this.keyList.expires },
      'the key list has expired: nodes refuse every image of this server; renew it with the root key (imageswarm key renew) and copy keys.json back',
    )
  }

  #warnIfKeyListExpiresSoon(): void {
    const expires = Date.parse(this.keyList.expires)
    const manifestsExpire = this.#now().getTime() + this.#options.manifestLifetime * 1000
    if (expires < manifestsExpire) {
      this.#logger.warn(
        { keyListVersion: this.keyList.version, keyListExpires: this.keyList.expires },
        'the key list expires before the manifests signed now do: nodes refuse everything once it has; renew it with the root key (imageswarm key renew) and copy keys.json back',
      )
    }
  }
}
