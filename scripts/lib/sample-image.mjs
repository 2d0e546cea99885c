// Builds a sample image root: nested directories, a few thousand small files, shell
// scripts and binaries with exec bits, symlinks (relative and absolute), a hardlink,
// a setuid file, and tens of MB of data — some compressible, some not — so a demo or
// a test moves a realistic mix through the archive and the swarm.
import { createHash } from 'node:crypto'
import { chmod, link, mkdir, symlink, utimes, writeFile } from 'node:fs/promises'
import { join } from 'node:path'

/** Deterministic bytes from a seed, so the same sample gives the same archive. */
function pseudoRandom(seed, length) {
  const out = Buffer.alloc(length)
  let block = createHash('sha256').update(seed).digest()
  for (let offset = 0; offset < length; offset += block.length) {
    block.copy(out, offset, 0, Math.min(block.length, length - offset))
    block = createHash('sha256').update(block).digest()
  }
  return out
}

export async function makeSampleImage(root, options = {}) {
  const dirs = options.dirs ?? 40
  const filesPerDir = options.filesPerDir ?? 60
  const bigFiles = options.bigFiles ?? 3
  const bigFileBytes = options.bigFileBytes ?? 8 * 1024 * 1024
  const seed = options.seed ?? 'imageswarm-demo'
  const stamp = new Date('2024-05-01T12:00:00Z')
  let files = 0
  let bytes = 0

  for (const dir of ['etc', 'usr/bin', 'usr/lib', 'usr/share/doc', 'var/log', 'tmp', 'root']) {
    await mkdir(join(root, dir), { recursive: true })
  }
  await chmod(join(root, 'tmp'), 0o1777)
  await chmod(join(root, 'root'), 0o700)
  await writeFile(join(root, 'etc/hostname'), 'node\n')
  await writeFile(join(root, 'etc/os-release'), 'NAME="imageswarm demo"\nID=demo\n')
  await writeFile(join(root, 'usr/bin/hello'), '#!/bin/sh\necho hello from the image\n')
  await chmod(join(root, 'usr/bin/hello'), 0o755)
  await writeFile(join(root, 'usr/bin/passwd'), pseudoRandom(`${seed}/passwd`, 64 * 1024))
  await chmod(join(root, 'usr/bin/passwd'), 0o4755)
  await link(join(root, 'usr/bin/hello'), join(root, 'usr/bin/hello-again'))
  await symlink('hello', join(root, 'usr/bin/hi'))
  await symlink('/usr/share/doc', join(root, 'doc'))
  await symlink('../usr/bin', join(root, 'etc/bin-link'))
  files += 5

  for (let d = 0; d < dirs; d++) {
    const dir = join(root, 'usr/share/doc', `package-${String(d).padStart(3, '0')}`, 'examples')
    await mkdir(dir, { recursive: true })
    for (let f = 0; f < filesPerDir; f++) {
      // Compressible text of varying size, like documentation.
      const text = `package ${d} file ${f}\n`.repeat(1 + ((d * 31 + f * 17) % 200))
      await writeFile(join(dir, `file-${f}.txt`), text)
      bytes += text.length
      files++
    }
    await writeFile(join(dir, 'run.sh'), `#!/bin/sh\necho ${d}\n`)
    await chmod(join(dir, 'run.sh'), 0o755)
    files++
  }
  for (let b = 0; b < bigFiles; b++) {
    // Incompressible data, like binaries and firmware.
    const data = pseudoRandom(`${seed}/big-${b}`, bigFileBytes)
    await writeFile(join(root, 'usr/lib', `libbig-${b}.so`), data)
    bytes += data.length
    files++
  }
  await utimes(join(root, 'etc/hostname'), stamp, stamp)
  return { root, files, bytes }
}
