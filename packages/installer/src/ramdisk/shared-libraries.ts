import { ImageSwarmError } from '@imageswarm/core'
import { runCommand, tailOf } from './run-command.js'

/**
 * The files `ldd` lists for a binary: each library it resolved (`libc.so.6 =>
 * /lib/x86_64-linux-gnu/libc.so.6 (0x…)`) and the dynamic loader (`/lib64/ld-linux-x86-64.so.2
 * (0x…)`). The vDSO has no file and is left out. A library ldd could not find throws: the
 * program would not start in the ramdisk either.
 */
export function parseLddOutput(output: string, binary: string): string[] {
  const files: string[] = []
  for (const raw of output.split('\n')) {
    const line = raw.trim()
    if (line === '' || /^(statically linked|not a dynamic executable)$/.test(line)) continue
    const arrow = /^(\S+) => (.+?)(?: \(0x[0-9a-f]+\))?$/.exec(line)
    if (arrow !== null) {
      const [, name, target] = arrow as unknown as [string, string, string]
      if (target === 'not found') {
        throw new ImageSwarmError(
          'E_TOOL_MISSING',
          `${binary} needs ${name}, which ldd cannot find`,
          {
            operation: 'find shared libraries',
            path: binary,
            hint: `install the package that provides ${name} (dpkg -S ${name}), or fix the library path`,
          },
        )
      }
      if (target.startsWith('/')) files.push(target)
      continue
    }
    const loader = /^(\/\S+) \(0x[0-9a-f]+\)$/.exec(line)
    if (loader !== null) files.push(loader[1]!)
  }
  return files
}

/**
 * The shared libraries (and dynamic loader) of each binary, by `ldd`; nothing for a static
 * one (busybox-static). Binaries run on the build host's C library, so the ramdisk carries
 * these exact files.
 */
export async function sharedLibraries(ldd: string, binary: string): Promise<string[]> {
  const result = await runCommand(ldd, [binary])
  // ldd exits 1 for a static binary ("not a dynamic executable").
  if (result.code !== 0 && !/not a dynamic executable/.test(result.stdout + result.stderr)) {
    throw new ImageSwarmError('E_TOOL_MISSING', `ldd ${binary} failed: ${tailOf(result.stderr)}`, {
      operation: 'find shared libraries',
      path: binary,
      hint: 'check that the program runs on this machine',
    })
  }
  return parseLddOutput(result.stdout, binary)
}
