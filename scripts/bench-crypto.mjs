#!/usr/bin/env node
// Benchmark of imageswarm's archive encryption and manifest verification (issue 17).
//
//   node scripts/bench-crypto.mjs [--size-mb M] [--runs N] [--work-dir W] [--verify-runs K]
//
// Encryption and decryption (AES-256-GCM, 64 KiB chunks, ArchiveEncryptStream and
// ArchiveDecryptStream) against a plain copy through the same streams, in the same run, each
// variant taking turns run by run; median of N runs (default 5) of M MiB (default 256):
//   memory: a buffer read in 1 MiB pieces (as a file is) → the transform → discarded, so
//           the figure is the CPU cost alone; "plain" is a PassThrough in its place
//   file:   encryptFile / decryptFile on --work-dir (default: the temp dir) against a stream
//           copy of the same file (createReadStream → createWriteStream), warm page cache, and
//           against that copy hashing both sides (encryptFile and decryptFile return the
//           SHA-256 of what they read and wrote, for the manifest)
//   gcm:    one createCipheriv per 64 KiB chunk in a loop, no streams: the ceiling
// Then minisign verification of a signed manifest, as a node does it: the key list against
// the root key, then the manifest against the signing key (median of K runs, default 2000,
// and the first, cold, call). Build core first: pnpm --filter @imageswarm/core build
import { createCipheriv, createHash, randomBytes } from 'node:crypto'
import { createReadStream, createWriteStream, existsSync } from 'node:fs'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { availableParallelism, cpus, loadavg, tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { PassThrough, Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { fileURLToPath } from 'node:url'
import { median, option } from './lib/bench-stats.mjs'

const here = dirname(fileURLToPath(import.meta.url))
const dist = join(here, '../packages/core/dist/index.js')
if (!existsSync(dist)) {
  console.error('build core first: pnpm --filter @imageswarm/core build')
  process.exit(2)
}
const core = await import(dist)

const sizeMiB = Number(option('--size-mb', '256'))
const runs = Number(option('--runs', '5'))
const verifyRuns = Number(option('--verify-runs', '2000'))
const workDir = option('--work-dir', tmpdir())
const size = sizeMiB << 20
const MB = 1e6

async function timed(run) {
  const start = process.hrtime.bigint()
  await run()
  return Number(process.hrtime.bigint() - start) / 1e9
}

function* pieces(buffer, pieceSize = 1 << 20) {
  for (let offset = 0; offset < buffer.length; offset += pieceSize) {
    yield buffer.subarray(offset, offset + pieceSize)
  }
}

async function drain(source) {
  for await (const _ of source);
}

console.log(
  `bench-crypto: ${sizeMiB} MiB, ${runs} runs; ${cpus()[0]?.model ?? 'cpu'} (${availableParallelism()} cores), load ${loadavg()[0].toFixed(2)}; node ${process.version}`,
)

// Incompressible data: AES does not care, and it is what a compressed archive looks like.
const block = randomBytes(1 << 20)
const plaintext = Buffer.alloc(size)
for (let offset = 0; offset < size; offset += block.length) block.copy(plaintext, offset)
const key = core.generateArchiveKey()
const binding = { image: 'bench', serial: 1 }

const ciphertextParts = []
await pipeline(
  Readable.from(pieces(plaintext)),
  core.createEncryptStream(key, binding),
  async (s) => {
    for await (const part of s) ciphertextParts.push(part)
  },
)
const ciphertext = Buffer.concat(ciphertextParts)
ciphertextParts.length = 0
if (ciphertext.length !== core.encryptedSize(size)) throw new Error('unexpected ciphertext size')

const dir = await mkdtemp(join(workDir, 'imageswarm-bench-crypto-'))
const plainFile = join(dir, 'plain')
const sealedFile = join(dir, 'sealed')
await writeFile(plainFile, plaintext)
await writeFile(sealedFile, ciphertext)

const variants = {
  'memory: plain (PassThrough)': () =>
    pipeline(Readable.from(pieces(plaintext)), new PassThrough(), drain),
  'memory: encrypt': () =>
    pipeline(Readable.from(pieces(plaintext)), core.createEncryptStream(key, binding), drain),
  'memory: decrypt': () =>
    pipeline(
      Readable.from(pieces(ciphertext)),
      core.createDecryptStream(key, binding, 'bench'),
      drain,
    ),
  'file: plain stream copy': () =>
    pipeline(
      createReadStream(plainFile, { highWaterMark: 1 << 20 }),
      createWriteStream(join(dir, 'copy')),
    ),
  'file: copy + SHA-256 of both sides': async () => {
    const read = createHash('sha256')
    const written = createHash('sha256')
    await pipeline(
      createReadStream(plainFile, { highWaterMark: 1 << 20 }),
      async function* (source) {
        for await (const part of source) {
          read.update(part)
          written.update(part)
          yield part
        }
      },
      createWriteStream(join(dir, 'copy')),
    )
    read.digest()
    written.digest()
  },
  'file: encryptFile': () => core.encryptFile(plainFile, join(dir, 'enc'), key, binding),
  'file: decryptFile': () => core.decryptFile(sealedFile, join(dir, 'dec'), key, binding),
  'gcm: 64 KiB chunks, no streams': async () => {
    const nonce = Buffer.alloc(12)
    for (let offset = 0, i = 0; offset < size; offset += 65536, i++) {
      nonce.writeUInt32BE(i, 7)
      const cipher = createCipheriv('aes-256-gcm', key.key, nonce)
      cipher.update(plaintext.subarray(offset, offset + 65536))
      cipher.final()
      cipher.getAuthTag()
    }
  },
}

const seconds = Object.fromEntries(Object.keys(variants).map((name) => [name, []]))
for (let run = 0; run < runs; run++) {
  for (const [name, variant] of Object.entries(variants)) seconds[name].push(await timed(variant))
}
await rm(dir, { recursive: true, force: true })

console.log('\n| variant | median s | MB/s | vs plain |')
console.log('| --- | ---: | ---: | ---: |')
for (const [name, times] of Object.entries(seconds)) {
  const plain = name.startsWith('memory')
    ? median(seconds['memory: plain (PassThrough)'])
    : median(seconds['file: plain stream copy'])
  const m = median(times)
  const ratio = name.startsWith('gcm') ? '' : `${(m / plain).toFixed(2)}×`
  console.log(`| ${name} | ${m.toFixed(3)} | ${(size / MB / m).toFixed(0)} | ${ratio} |`)
}
const overhead = core.encryptedSize(size) - size
console.log(
  `\nsize: ${size} bytes → ${core.encryptedSize(size)} (+${overhead} bytes, ${((100 * overhead) / size).toFixed(4)} %)`,
)

// Verification as a node does it: the key list under the root key, then the manifest.
const root = core.generateSecretKey()
const signing = core.generateSecretKey()
const now = new Date()
const keyList = core.signKeyList(
  {
    type: core.KEY_LIST_TYPE,
    schemaVersion: 1,
    version: 1,
    created: now.toISOString(),
    expires: new Date(now.getTime() + 365 * 86_400_000).toISOString(),
    rootKeyId: root.keyId,
    signingKeys: [core.signingKeyEntry(signing.publicKey, now)],
    revokedKeyIds: [],
  },
  root,
)
const manifest = core.signManifest(
  {
    schemaVersion: 1,
    name: 'bench',
    archiveFile: 'image-bench.tar.zst',
    size: ciphertext.length,
    sha256: 'ab'.repeat(32),
    infoHash: core.parseInfoHash('d2474e86c95b19b8bcfdb92bc12c9d44667cfa36'),
    pieceLength: 1 << 20,
    compression: 'zstd',
    created: now.toISOString(),
    serial: 1,
    expires: new Date(now.getTime() + 7 * 86_400_000).toISOString(),
  },
  signing,
)
const rootPublic = core.parsePublicKeyFile(core.encodePublicKeyFile(root.publicKey), 'root.pub')
const verifyAll = () => {
  const { keyList: list } = core.verifyKeyList(
    keyList.bytes,
    keyList.signature,
    rootPublic,
    { now },
    'keys.json',
  )
  return core.verifySignedManifest(
    manifest.bytes,
    manifest.signature,
    { keyList: list, now, image: 'bench' },
    'manifest.json',
  )
}
const cold = await timed(verifyAll)
const verifyTimes = []
for (let run = 0; run < verifyRuns; run++) verifyTimes.push(await timed(verifyAll))
console.log(
  `verification (key list + manifest, ${manifest.bytes.length} + ${keyList.bytes.length} bytes): first call ${(cold * 1e3).toFixed(2)} ms, median of ${verifyRuns} ${(median(verifyTimes) * 1e6).toFixed(0)} µs`,
)
console.log(`load at the end ${loadavg()[0].toFixed(2)}`)
