import {
  type ImageSummary,
  type ImageSwarmError,
  type Logger,
  parseImageName,
  silentLogger,
  summarizeManifest,
} from '@imageswarm/core'
import type { PublishedImage } from './publish.js'
import { torrentForServers } from './torrent-file.js'
import { type UploadBudget, uploadBudgetFor } from './upload-budget.js'

/** Where an image being published is: what a node asking for it is told it waits for. */
export type PublishingStage =
  | 'waiting for the images before it'
  | 'checking the image root and its archive'
  | 'checking the tarball'
  | 'hashing the tarball'
  | 'packing the image root'
  | 'encrypting the archive'
  | 'recording the version and making deltas'
  | 'starting to seed it'

/** Bytes of one image's archive served over HTTP (the web seed), by infohash. */
export interface WebSeedUpload {
  infoHash: string
  uploaded: number
}

/**
 * The images a server publishes: the ones published (served from their held archives)
 * and the ones named on its command line that are still being published, with how far
 * each has got. The HTTP routes answer from it; the server moves each image along.
 */
export class ImageCatalog {
  /** Archive bytes served over HTTP are paced to the server's upload limit. */
  readonly uploadBudget: UploadBudget | undefined
  readonly #logger: Logger
  readonly #published = new Map<string, PublishedImage>()
  readonly #publishing = new Map<string, PublishingStage>()
  readonly #webSeedUploaded = new Map<string, number>()
  /** Archives whose change since publishing has been logged, so it is logged once. */
  readonly #changeLogged = new WeakSet<PublishedImage>()
  readonly #serversFor: ((infoHash: string) => string[]) | undefined
  /** Each image's `.torrent` for the servers it was last made for. */
  readonly #servedTorrents = new WeakMap<PublishedImage, { servers: string; torrent: Uint8Array }>()

  /**
   * `uploadLimit`: bytes a second for the web seed, -1 (the default) for none.
   * `serversFor`: the base URLs of the servers serving an infohash, this one first (see
   * `ServerRegistry`); the `.torrent` handed out lists them all. Unset: the torrent as
   * published, this server's tracker and web seed only.
   */
  constructor(
    options: {
      uploadLimit?: number
      logger?: Logger
      serversFor?: (infoHash: string) => string[]
    } = {},
  ) {
    this.uploadBudget = uploadBudgetFor(options.uploadLimit ?? -1)
    this.#logger = options.logger ?? silentLogger()
    this.#serversFor = options.serversFor
  }

  /** The image's `.torrent` as handed out: every server serving it (see torrentForServers). */
  servedTorrent(image: PublishedImage): Uint8Array {
    const servers = this.#serversFor?.(image.manifest.infoHash) ?? []
    if (servers.length === 0) return image.torrent
    const key = servers.join(' ')
    const kept = this.#servedTorrents.get(image)
    if (kept?.servers === key) return kept.torrent
    const torrent = torrentForServers(
      image.torrent,
      servers,
      image.manifest.name,
      image.manifest.archiveFile,
    )
    this.#servedTorrents.set(image, { servers: key, torrent })
    return torrent
  }

  /** Names an image as being published; until `add`, its routes answer 503. */
  expect(name: string, stage: PublishingStage = 'waiting for the images before it'): void {
    this.#publishing.set(parseImageName(name), stage)
  }

  /** Moves an image being published on to its next stage. */
  advance(name: string, stage: PublishingStage): void {
    if (this.#publishing.has(name)) this.#publishing.set(name, stage)
  }

  /** The image is published: its routes serve it. A previous version's archive is closed. */
  add(image: PublishedImage): void {
    const name = image.manifest.name
    const previous = this.#published.get(name)
    this.#publishing.delete(name)
    this.#published.set(name, image)
    if (previous && previous.archive !== image.archive) void previous.archive.close()
    for (const delta of previous?.versions?.deltas ?? []) {
      if (!image.versions?.deltas.some((kept) => kept.archive === delta.archive)) {
        void delta.archive.close()
      }
    }
  }

  /** Publishing failed or was given up: the image is no longer awaited. */
  abandon(name: string): void {
    this.#publishing.delete(name)
  }

  get(name: string): PublishedImage | undefined {
    return this.#published.get(name)
  }

  /** How far an image named to be published has got; undefined when it is not awaited. */
  publishingStage(name: string): PublishingStage | undefined {
    return this.#publishing.get(name)
  }

  get published(): PublishedImage[] {
    return [...this.#published.values()]
  }

  /** The images still being published, in the order they were named. */
  get publishing(): string[] {
    return [...this.#publishing.keys()]
  }

  summaries(): ImageSummary[] {
    return this.published.map((image) => summarizeManifest(image.manifest))
  }

  countWebSeedBytes(infoHash: string, bytes: number): void {
    this.#webSeedUploaded.set(infoHash, (this.#webSeedUploaded.get(infoHash) ?? 0) + bytes)
  }

  /**
   * Logs, once per image, that its archive changed since it was published (`error` from
   * `PublishedArchive.check()`): the operator must republish it.
   */
  noticeArchiveChange(image: PublishedImage, error: ImageSwarmError): void {
    if (this.#changeLogged.has(image)) return
    this.#changeLogged.add(image)
    this.#logger.error(
      { image: image.manifest.name, archive: error.path, err: error.message, hint: error.hint },
      'archive changed since it was published: the web seed refuses it; republish the image',
    )
  }

  /** Checks every published archive for a change in place (see `noticeArchiveChange`). */
  async checkArchives(): Promise<void> {
    await Promise.all(
      this.published.map(async (image) => {
        const changed = await image.archive.check().catch(() => undefined)
        if (changed) this.noticeArchiveChange(image, changed)
      }),
    )
  }

  /** Archive bytes served over HTTP so far, per published image. */
  webSeedUploads(): WebSeedUpload[] {
    return this.published.map(({ manifest }) => ({
      infoHash: manifest.infoHash,
      uploaded: this.#webSeedUploaded.get(manifest.infoHash) ?? 0,
    }))
  }

  /** Closes every held archive. */
  async close(): Promise<void> {
    await Promise.all(
      this.published.flatMap((image) => [
        image.archive.close(),
        ...(image.versions?.deltas ?? []).map((delta) => delta.archive.close()),
      ]),
    )
    this.#published.clear()
    this.#publishing.clear()
  }
}
