import type { Logger } from '@imageswarm/core'
import { publishImage } from '@imageswarm/seeder'
import { firstLanAddress } from '../server.js'
import { type PublishingFlags, seederConfigFrom } from './serve.js'

export interface PublishFlags extends PublishingFlags {
  advertiseAddress?: string
  port: number
}

/** `imageswarm publish` (si_installbtimage): pack and describe images without serving. */
export async function runPublish(flags: PublishFlags, logger: Logger): Promise<void> {
  const config = seederConfigFrom(flags)
  const address = flags.advertiseAddress ?? firstLanAddress() ?? '127.0.0.1'
  const serverUrl = `http://${address}:${flags.port}`
  for (const image of flags.image) {
    const published = await publishImage({
      image,
      config,
      serverUrl,
      update: flags.updateImage,
      logger: logger.child({ image }),
    })
    process.stdout.write(
      `${published.manifest.name}\t${published.manifest.infoHash}\t${published.archivePath}\t${published.torrentPath}\n`,
    )
  }
}
