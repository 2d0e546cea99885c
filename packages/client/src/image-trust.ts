import { lstat, mkdir, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import {
  CACHE_TRUST_STATE_FILE,
  encodeTrustRecord,
  errnoOf,
  type ImageManifest,
  ImageSwarmError,
  INSTALLED_RECORD_PATH,
  type InstalledImageRecord,
  installedImageRecord,
  isImageSwarmError,
  KEY_LIST_MAX_BYTES,
  type Logger,
  type MinisignPublicKey,
  manifestSignaturePath,
  type NodeTrustState,
  parseInstalledImageRecord,
  parseNodeTrustState,
  parsePublicKeyLine,
  pinsOf,
  raiseTrustState,
  readTrustRootFile,
  type SignedImageManifest,
  serverUrl,
  TRUST_PATHS,
  type TrustedInstall,
  type TrustFloor,
  trustFloor,
  verifyKeyList,
  verifySignedManifest,
  writeFileAtomically,
} from '@imageswarm/core'
import type { ClientConfig } from './config.js'
import { ImageCache } from './image-cache.js'
import { fetchInstallFile, fetchManifestFile, type ServerRequestOptions } from './server-api.js'
import { captureTimes, restoreTimes } from './target-root.js'

/**
 * A `.minisig` is four short lines; parseSignature refuses one over 16 KiB with
 * E_SIGNATURE_INVALID, so the client reads a little more than that and lets it say so.
 */
const SIGNATURE_READ_LIMIT = 64 * 1024

/** The root key a node trusts, and where it came from. */
export interface TrustRoot {
  publicKey: MinisignPublicKey
  /** The file, or the setting that gave it inline. */
  source: string
  /** Given inline (`imageswarm.trust-root-key=`): the insecure test mode. */
  testMode: boolean
}

/**
 * The node's root key: `trustRoot` (a `root.pub` file), or, in the insecure test mode only,
 * `trustRootKey` (its `RW…` line; resolveInstallParameters refuses it otherwise).
 * Undefined when neither is set: the node installs unsigned images, as before.
 */
export async function loadTrustRoot(config: ClientConfig): Promise<TrustRoot | undefined> {
  if (config.trustRoot !== undefined) {
    return {
      publicKey: await readTrustRootFile(
        config.trustRoot,
        'read trust root',
        'give the root.pub that imageswarm key generate wrote (--trust-root FILE; in the ramdisk, imageswarm initrd --trust-root FILE puts it at /etc/imageswarm/root.pub)',
      ),
      source: config.trustRoot,
      testMode: false,
    }
  }
  if (config.trustRootKey !== undefined) {
    // resolveInstallParameters refuses this already; a config made another way must not
    // fall back to installing unsigned images.
    if (!config.insecureTestMode) {
      throw new ImageSwarmError(
        'E_CONFIG_INVALID',
        'a root key given inline (trustRootKey) is accepted only in the insecure test mode',
        {
          operation: 'read trust root',
          path: 'trustRootKey',
          hint: 'give the root key as a file (trustRoot), or set insecureTestMode for a test',
        },
      )
    }
    return {
      publicKey: parsePublicKeyLine(config.trustRootKey, 'imageswarm.trust-root-key'),
      source: 'imageswarm.trust-root-key (insecure test mode)',
      testMode: true,
    }
  }
  return undefined
}

/**
 * The floor this node checks the server's key list and manifest against: the highest of
 * `min-serial`/`min-key-list-version` and what the node recorded, in the cache's
 * `imageswarm-trust.json` (read before any disk is touched) and in a target root installed
 * before (`/etc/imageswarm/installed.json`, if the target holds one).
 */
export async function readTrustFloor(config: ClientConfig, logger: Logger): Promise<TrustFloor> {
  let cacheState: { state: NodeTrustState; path: string } | undefined
  if (config.cache !== undefined) {
    const found = await ImageCache.peek(config.cache, CACHE_TRUST_STATE_FILE, logger)
    // Written by this client alone, on the node's own disk: a damaged one is refused
    // (parseNodeTrustState), not taken for "no floor".
    if (found) cacheState = { state: parseNodeTrustState(found.text, found.path), path: found.path }
  }
  let installed: { record: InstalledImageRecord; path: string } | undefined
  const recordPath = join(config.target, INSTALLED_RECORD_PATH)
  try {
    const text = await readFile(recordPath, 'utf8')
    installed = { record: parseInstalledImageRecord(text, recordPath), path: recordPath }
  } catch (err) {
    // The target is about to be replaced, and usually empty: a record that cannot be read
    // there is noted, not fatal.
    if (errnoOf(err) !== 'ENOENT' && errnoOf(err) !== 'ENOTDIR') {
      logger.warn(
        { record: recordPath, err: err instanceof Error ? err.message : String(err) },
        'the target root’s install record cannot be read; not using it as a floor',
      )
    }
  }
  return trustFloor({
    image: config.image,
    ...(config.minSerial === undefined ? {} : { minSerial: config.minSerial }),
    ...(config.minKeyListVersion === undefined
      ? {}
      : { minKeyListVersion: config.minKeyListVersion }),
    ...(cacheState ? { cacheState } : {}),
    ...(installed ? { installed } : {}),
  })
}

/** What this node checks an image server's key list and manifest against. */
export interface ImageTrust {
  root: TrustRoot
  floor: TrustFloor
}

/**
 * With a trust root: the root key and the node's floor (see loadTrustRoot, readTrustFloor),
 * read once for every server asked; undefined without one. The test mode (a root key on the
 * kernel command line) is logged as insecure every time.
 */
export async function loadImageTrust(
  config: ClientConfig,
  logger: Logger,
): Promise<ImageTrust | undefined> {
  const root = await loadTrustRoot(config)
  if (!root) return undefined
  if (root.testMode) {
    logger.warn(
      { rootKey: root.publicKey.keyId },
      'INSECURE TEST MODE: trusting a root key from the kernel command line (imageswarm.trust-root-key=), which anyone who can answer this node’s network boot can set; never use this in production',
    )
  }
  return { root, floor: await readTrustFloor(config, logger) }
}

/** A manifest whose signature checked out, and what it was checked under. */
export interface VerifiedImage {
  manifest: SignedImageManifest
  /** The key that signed the manifest. */
  signingKeyId: string
  keyList: { version: number; sha256: string; expires: string }
  /** The server certificates the verified key list pins (SHA-256, hex; none over HTTP). */
  pins: readonly string[]
  floor: TrustFloor
  /** Fetching and checking the key list and the manifest. */
  seconds: number
}

export interface VerifyImageOptions {
  image: string
  root: TrustRoot
  floor: TrustFloor
  request: ServerRequestOptions
  logger: Logger
  now?: () => Date
}

/**
 * Fetches the server's key list and the image's manifest with their signatures and checks
 * them against the node's root key and floor, before anything is written anywhere:
 * the key list signed by the root (`E_KEYLIST_UNTRUSTED`, `E_SIGNATURE_MISSING`), not
 * expired, not older than the floor (`E_KEYLIST_EXPIRED`, `E_ROLLBACK`); the manifest signed
 * by a key the list accepts (`E_SIGNATURE_MISSING`, `E_SIGNATURE_INVALID`, `E_KEY_UNKNOWN`,
 * `E_KEY_REVOKED`, `E_KEY_EXPIRED`), of this image, not expired, not older than the floor
 * (`E_MANIFEST_EXPIRED`, `E_ROLLBACK`). The manifest is parsed only after its signature
 * checked out.
 *
 * A signature that does not match (or a key the list does not know) is fetched once more:
 * the server signs again at half a manifest's lifetime and when its keys change, which can
 * fall between the requests for a file and its signature. A forgery fails both times.
 */
export async function fetchVerifiedManifest(options: VerifyImageOptions): Promise<VerifiedImage> {
  const { image, root, floor, request, logger } = options
  const now = options.now ?? (() => new Date())
  const started = performance.now()
  for (let round = 1; ; round++) {
    try {
      const keyListUrl = serverUrl(request.server, TRUST_PATHS.keyList)
      // The key list is the anchor of the HTTPS pin: over HTTPS it comes over a connection
      // whose certificate is not checked, and its root signature is what is (below).
      const unpinned = { ...request, verifiedBySignature: true }
      // Each file and its signature in parallel: two round trips instead of four.
      const [keyListBytes, keyListSignature] = await Promise.all([
        fetchInstallFile(TRUST_PATHS.keyList, 'key list', KEY_LIST_MAX_BYTES, unpinned),
        fetchInstallFile(
          TRUST_PATHS.keyListSignature,
          'key list signature',
          SIGNATURE_READ_LIMIT,
          unpinned,
        ),
      ])
      if (keyListBytes === undefined) {
        throw new ImageSwarmError(
          'E_SIGNATURE_MISSING',
          `the image server publishes no key list (${keyListUrl}: 404)`,
          {
            operation: 'fetch key list',
            path: keyListUrl,
            hint: 'this node trusts a root key, so it installs signed images only: run the server with serve --keys DIR, or boot the node without a trust root',
          },
        )
      }
      const verifiedList = verifyKeyList(
        keyListBytes,
        keyListSignature?.toString('utf8'),
        root.publicKey,
        {
          now: now(),
          ...(floor.minKeyListVersion === undefined
            ? {}
            : { seenVersion: floor.minKeyListVersion }),
          ...(floor.keyListSha256 === undefined ? {} : { seenSha256: floor.keyListSha256 }),
        },
        keyListUrl,
      )
      // Every request from here on accepts only a certificate this list pins (over HTTPS;
      // without a pin, one a CA the node trusts signed).
      const pins = pinsOf(verifiedList.keyList)
      request.connection?.pin(pins)
      if (request.connection?.https) {
        logger.info(
          { server: request.server, pins, keyListVersion: verifiedList.keyList.version },
          pins.length > 0
            ? 'HTTPS: the server must present a certificate the key list pins'
            : 'HTTPS: the key list pins no certificate; the server’s must be one a CA this node trusts signed',
        )
      }
      const [manifestFile, signature] = await Promise.all([
        fetchManifestFile(image, request),
        fetchInstallFile(
          manifestSignaturePath(image),
          'manifest signature',
          SIGNATURE_READ_LIMIT,
          request,
        ),
      ])
      const verified = verifySignedManifest(
        manifestFile.bytes,
        signature?.toString('utf8'),
        {
          keyList: verifiedList.keyList,
          now: now(),
          image,
          ...(floor.minSerial === undefined ? {} : { minSerial: floor.minSerial }),
        },
        manifestFile.url,
      )
      return {
        manifest: verified.manifest,
        signingKeyId: verified.keyId,
        keyList: {
          version: verifiedList.keyList.version,
          sha256: verifiedList.sha256,
          expires: verifiedList.keyList.expires,
        },
        pins,
        floor,
        seconds: (performance.now() - started) / 1000,
      }
    } catch (err) {
      const retry =
        round === 1 &&
        isImageSwarmError(err) &&
        (err.code === 'E_SIGNATURE_INVALID' || err.code === 'E_KEY_UNKNOWN')
      if (!retry) throw err
      logger.warn(
        { code: err.code, err: err.message },
        'signature check failed; fetching the key list and the manifest once more (the server may have signed again between two requests)',
      )
    }
  }
}

/** What the records of a verified install say. */
export function trustedInstallOf(verified: VerifiedImage, server: string): TrustedInstall {
  return {
    image: verified.manifest.name,
    serial: verified.manifest.serial,
    infoHash: verified.manifest.infoHash,
    sha256: verified.manifest.sha256,
    signingKeyId: verified.signingKeyId,
    keyList: { version: verified.keyList.version, sha256: verified.keyList.sha256 },
    installed: new Date(),
    server,
  }
}

/** The record of an unsigned image's install: its version, without signature details. */
export function installedVersionOf(
  manifest: ImageManifest,
  server: string,
): TrustedInstall | undefined {
  if (manifest.serial === undefined) return undefined
  return {
    image: manifest.name,
    serial: manifest.serial,
    infoHash: manifest.infoHash,
    sha256: manifest.sha256,
    installed: new Date(),
    server,
  }
}

/**
 * Writes `/etc/imageswarm/installed.json` into the installed root. The image's own
 * `/etc` keeps its mtime. Where the image has `etc` or `etc/imageswarm` as something other
 * than a directory (a symlink could lead out of the target), nothing is written: logged.
 */
export async function recordInstalledImage(
  target: string,
  install: TrustedInstall,
  logger: Logger,
): Promise<void> {
  const etc = join(target, 'etc')
  const dir = join(etc, 'imageswarm')
  for (const path of [etc, dir]) {
    const st = await lstat(path).catch(() => undefined)
    if (st && !st.isDirectory()) {
      logger.warn(
        { path },
        'the image has no directory here (a symlink?): the install record is not written into the target',
      )
      return
    }
  }
  const times = await captureTimes([etc, dir])
  await mkdir(dir, { recursive: true, mode: 0o755 })
  await writeFileAtomically(
    join(target, INSTALLED_RECORD_PATH),
    encodeTrustRecord(installedImageRecord(install)),
  )
  await restoreTimes(times)
}

/**
 * Raises the node's trust state in the image cache (`imageswarm-trust.json`): the floor the
 * next install of this node starts from, after the installer has wiped the target's disk.
 */
export async function recordTrustState(
  cacheDir: string,
  install: TrustedInstall,
  logger: Logger,
): Promise<void> {
  const path = join(cacheDir, CACHE_TRUST_STATE_FILE)
  let previous: NodeTrustState | undefined
  try {
    previous = parseNodeTrustState(await readFile(path, 'utf8'), path)
  } catch (err) {
    if (errnoOf(err) !== 'ENOENT') throw err
  }
  const state = raiseTrustState(previous, install)
  await writeFileAtomically(path, encodeTrustRecord(state))
  logger.info(
    { path, image: install.image, serial: state.images[install.image]?.serial },
    'trust state recorded in the image cache',
  )
}
