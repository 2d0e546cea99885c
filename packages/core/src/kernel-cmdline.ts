import { readFile } from 'node:fs/promises'

/** Where the running kernel's command line is read from (overridable for tests). */
export const PROC_CMDLINE = '/proc/cmdline'

/**
 * Splits a kernel command line into parameters the way the kernel does
 * (`lib/cmdline.c`, `next_arg`): whitespace separates parameters except inside double
 * quotes; a quoted value (`key="a b"`) or a quoted whole parameter (`"key=a b"`) loses
 * its quotes. A parameter without `=` has the value `''`. When a name repeats, the last
 * one wins, as for the kernel's own `param=` handling.
 *
 * @example
 *   parseKernelCmdline('quiet IMAGESERVER=10.0.0.1 imageswarm.target="/a b"')
 *   // Map { 'quiet' => '', 'IMAGESERVER' => '10.0.0.1', 'imageswarm.target' => '/a b' }
 */
export function parseKernelCmdline(cmdline: string): Map<string, string> {
  const params = new Map<string, string>()
  for (const token of splitParameters(cmdline)) {
    const [name, value] = splitParameter(token)
    if (name !== '') params.set(name, value)
  }
  return params
}

function splitParameters(cmdline: string): string[] {
  const tokens: string[] = []
  let current = ''
  let inQuote = false
  let started = false
  for (const ch of cmdline) {
    if (ch === '"') {
      inQuote = !inQuote
      current += ch
      started = true
    } else if (!inQuote && /\s/.test(ch)) {
      if (started) tokens.push(current)
      current = ''
      started = false
    } else {
      current += ch
      started = true
    }
  }
  if (started) tokens.push(current)
  return tokens
}

function splitParameter(token: string): [string, string] {
  let text = token
  // A whole parameter in quotes: "key=value with spaces".
  if (text.startsWith('"')) {
    text = text.slice(1)
    if (text.endsWith('"')) text = text.slice(0, -1)
  }
  const eq = text.indexOf('=')
  if (eq === -1) return [text.replaceAll('"', ''), '']
  const name = text.slice(0, eq)
  let value = text.slice(eq + 1)
  if (value.startsWith('"')) {
    value = value.slice(1)
    if (value.endsWith('"')) value = value.slice(0, -1)
  }
  return [name, value]
}

/** Reads and parses the kernel command line; a missing file (not Linux, a container) is empty. */
export async function readKernelCmdline(path = PROC_CMDLINE): Promise<Map<string, string>> {
  try {
    return parseKernelCmdline(await readFile(path, 'utf8'))
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return new Map()
    throw err
  }
}
