import { readdir, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { gunzipSync } from 'node:zlib'
import { formatMiB } from '@imageswarm/client'
import {
  DeltaDescriptorSchema,
  ImageSwarmError,
  ImageVersionSchema,
  archivePath as imageFilePath,
  parseImageName,
  parseVersionDocument,
  serverUrl,
  VERSION_FILES,
  type VersionList,
  VersionListSchema,
} from '@imageswarm/core'
import { versionsDir } from '@imageswarm/seeder'

interface VersionsFlags {
  server?: string
  tarballsDir: string
  json: boolean
}

/**
 * `imageswarm versions IMAGE`: the versions the server keeps and the deltas to the newest,
 * read from the server's tarballs directory, or asked of a running server (`--server`).
 */
export async function runVersions(image: string, flags: VersionsFlags): Promise<void> {
  const name = parseImageName(image)
  const list = flags.server
    ? await askServer(flags.server, name)
    : await readLocal(flags.tarballsDir, name)
  if (flags.json) {
    process.stdout.write(`${JSON.stringify(list, null, 2)}\n`)
    return
  }
  process.stdout.write(`image ${list.image}: newest version ${list.newest}, keeping ${list.keep}\n`)
  process.stdout.write('version  parent  created                   archive     entries  infohash\n')
  for (const v of [...list.versions].reverse()) {
    process.stdout.write(
      `${String(v.version).padEnd(8)} ${String(v.parent ?? '-').padEnd(7)} ${v.created.padEnd(25)} ${formatMiB(v.size).padStart(10)} ${String(v.entries).padStart(8)}  ${v.infoHash}\n`,
    )
  }
  for (const delta of list.deltas) {
    process.stdout.write(
      `delta ${delta.from} → ${list.newest}: ${formatMiB(delta.size)}, ${delta.members} members, ${delta.removals} removals (made in ${delta.seconds} s)\n`,
    )
  }
}

async function askServer(server: string, image: string): Promise<VersionList> {
  const url = serverUrl(
    server.includes('://') ? server : `http://${server}`,
    imageFilePath(image, VERSION_FILES.versions),
  )
  const response = await fetch(url).catch((err: unknown) => {
    throw new ImageSwarmError('E_SERVER_UNREACHABLE', `cannot reach ${url}: ${String(err)}`, {
      path: url,
      hint: 'check --server and that imageswarm serve runs there',
      cause: err,
    })
  })
  if (!response.ok) {
    throw new ImageSwarmError('E_UNKNOWN_IMAGE', `${url} answered ${response.status}`, {
      path: url,
      hint: 'check the image name; the server keeps versions of unencrypted images only',
    })
  }
  return parseVersionDocument(VersionListSchema, await response.json(), url)
}

async function readLocal(tarballsDir: string, image: string): Promise<VersionList> {
  const dir = versionsDir(tarballsDir, image)
  const names = await readdir(dir).catch(() => {
    throw new ImageSwarmError('E_IMAGE_NOT_FOUND', `no versions of image ${image} in ${dir}`, {
      path: dir,
      hint: 'publish or serve the image first, or give --tarballs-dir (or --server URL)',
    })
  })
  const versions = []
  for (const name of names.filter((n) => /^v[0-9]+\.json$/.test(n))) {
    const path = join(dir, name)
    versions.push(
      parseVersionDocument(ImageVersionSchema, JSON.parse(await readFile(path, 'utf8')), path),
    )
  }
  versions.sort((a, b) => a.version - b.version)
  const newest = versions.at(-1)?.version ?? 0
  const deltas = []
  for (const name of names.filter(
    (n) => n.startsWith('delta-') && n.endsWith(`-${newest}.json.gz`),
  )) {
    const path = join(dir, name)
    const d = parseVersionDocument(
      DeltaDescriptorSchema,
      JSON.parse(gunzipSync(await readFile(path)).toString('utf8')),
      path,
    )
    deltas.push({
      from: d.from,
      size: d.size,
      members: d.members.length,
      removals: d.removals.length,
      seconds: d.seconds,
    })
  }
  deltas.sort((a, b) => a.from - b.from)
  return { image, newest, keep: versions.length, versions, deltas }
}
