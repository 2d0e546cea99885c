import type { Logger } from '@imageswarm/core'
import { ManifestSigner, publishImage } from '@imageswarm/seeder'
import { encryptionFor, firstLanAddress } from '../server.js'
import { lockStateDirectories, type PublishingFlags, seederConfigFrom } from './serve.js'

export interface PublishFlags extends PublishingFlags {
  advertiseAddress?: string
  port: number
  /** The server will serve HTTPS (`serve --tls-cert`): the .torrent announces https URLs. */
  https?: boolean
}

/** `imageswarm publish` (si_installbtimage): pack and describe images without serving. */
export async function runPublish(flags: PublishFlags, logger: Logger): Promise<void> {
  const config = seederConfigFrom(flags)
  const address = flags.advertiseAddress ?? firstLanAddress() ?? '127.0.0.1'
  const serverUrl = `${flags.https ? 'https' : 'http'}://${address}:${flags.port}`
  // A server running on these directories would have archives rewritten under it.
  const lock = await lockStateDirectories(config, 'publish')
  try {
    const signer =
      config.keys === undefined
        ? undefined
        : await ManifestSigner.open({
            keys: config.keys,
            manifestLifetime: config.manifestLifetime,
            logger: logger.child({ component: 'signing' }),
          })
    const encryption = config.encrypt ? await encryptionFor(config) : undefined
    for (const image of flags.image) {
      const published = await publishImage({
        ...(encryption ? { encryption } : {}),
        image,
        config,
        serverUrl,
        update: flags.updateImage,
        logger: logger.child({ image }),
        ...(signer ? { signer } : {}),
      })
      await published.archive.close()
      process.stdout.write(
        `${published.manifest.name}\t${published.manifest.infoHash}\t${published.archivePath}\t${published.torrentPath}\n`,
      )
    }
  } finally {
    await lock.release()
  }
}
