import { type Logger, silentLogger } from '@imageswarm/core'
import type { ImageCatalog } from './catalog.js'
import type { ManifestSigner } from './manifest-signer.js'
import { resignPublishedImage } from './publish.js'

/**
 * How often a running server looks at its key list and its manifests' expiry: a `stat` of
 * two files and a date comparison per image. A quarter of the manifest lifetime, so a
 * manifest is signed again soon after half of it has passed, and at most every 10 s, so a
 * rotated or revoked key is picked up within that.
 */
export function renewalIntervalMs(manifestLifetimeSeconds: number): number {
  return Math.min(10_000, Math.max(250, (manifestLifetimeSeconds * 1000) / 4))
}

/**
 * Keeps a running server's signatures fresh: every published manifest is signed again,
 * with the same serial and archive, once half of its lifetime has passed, and at once when
 * the key list changes on disk (a key rotated, revoked or renewed). Each new signature is
 * written beside the manifest (manifest first) and then served.
 */
export class SignatureRenewal {
  readonly #catalog: ImageCatalog
  readonly #signer: ManifestSigner
  readonly #logger: Logger
  #timer: NodeJS.Timeout | undefined
  #running: Promise<void> | undefined

  constructor(options: { catalog: ImageCatalog; signer: ManifestSigner; logger?: Logger }) {
    this.#catalog = options.catalog
    this.#signer = options.signer
    this.#logger = options.logger ?? silentLogger()
  }

  start(): void {
    if (this.#timer) return
    this.#timer = setInterval(() => {
      this.#running ??= this.renew().finally(() => {
        this.#running = undefined
      })
    }, renewalIntervalMs(this.#signer.manifestLifetime))
    this.#timer.unref()
  }

  /** Reloads a changed key list, then signs again every manifest that is due. */
  async renew(): Promise<void> {
    try {
      await this.#signer.reloadIfChanged()
      this.#signer.checkKeyListExpiry()
      for (const image of this.#catalog.published) {
        if (!this.#signer.isDue(image.manifest, image.signingKeyId)) continue
        const renewed = await resignPublishedImage(image, this.#signer)
        // Publishing may have replaced the image meanwhile; the newer one stays.
        if (this.#catalog.get(image.manifest.name) !== image) continue
        this.#catalog.add(renewed)
        this.#logger.info(
          {
            image: renewed.manifest.name,
            serial: renewed.manifest.serial,
            expires: renewed.manifest.expires,
            signingKey: renewed.signingKeyId,
          },
          'manifest signed again',
        )
      }
    } catch (err) {
      this.#logger.error(
        { err: err instanceof Error ? err.message : String(err) },
        'signing the manifests again failed; trying again shortly',
      )
    }
  }

  async stop(): Promise<void> {
    clearInterval(this.#timer)
    this.#timer = undefined
    await this.#running
  }
}
