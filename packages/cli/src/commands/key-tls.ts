import { execFile } from 'node:child_process'
import { generateKeyPairSync } from 'node:crypto'
import { existsSync } from 'node:fs'
import { link, mkdir, readFile, rm } from 'node:fs/promises'
import { isIP } from 'node:net'
import { hostname } from 'node:os'
import { join, resolve } from 'node:path'
import { promisify } from 'node:util'
import {
  errnoOf,
  ImageSwarmError,
  pinsOf,
  readCertificatePem,
  writeNewFile,
} from '@imageswarm/core'
import type { Command } from 'commander'
import { integerFlag } from '../options.js'
import { firstLanAddress } from '../server.js'
import {
  addExpiryOption,
  addRootOptions,
  daysFrom,
  loadRootKey,
  openKeysToChange,
  print,
  type RootFlags,
  signNext,
} from './key.js'

/**
 * `imageswarm key tls-generate` and `imageswarm key tls-pin`: the image server's HTTPS
 * certificate and its pin in the root-signed key list (docs/trust.md, "HTTPS"). Nodes with a
 * root key accept only a certificate the verified list pins, so a self-signed one is enough
 * and a new one reaches them with the next key list, never with a new ramdisk.
 */

/** The files `tls-generate` writes into its `--output` directory. */
export const TLS_FILES = { certificate: 'tls.crt', privateKey: 'tls.key' } as const

/**
 * 825 days, the longest a publicly trusted server certificate could last until 2020: a
 * certificate nodes trust by its pin needs no CA's limit, but one renewed every two years
 * keeps the rotation (new certificate, pin both, switch, drop the old pin) a known routine.
 */
const DEFAULT_CERTIFICATE_DAYS = 825

export interface TlsGenerateFlags {
  output: string
  name?: string[]
  address?: string[]
  days: number
}

export interface TlsPinFlags extends RootFlags {
  cert: string
  replace: boolean
  expiresDays: number
}

function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value]
}

/** Registers `tls-generate` and `tls-pin` under `key`. */
export function addTlsKeyCommands(key: Command): void {
  key
    .command('tls-generate')
    .description(
      "make the image server's self-signed HTTPS certificate (ECDSA P-256): DIR/tls.crt, DIR/tls.key",
    )
    .requiredOption('--output <dir>', 'directory for tls.crt and tls.key (made if missing)')
    .option(
      '--name <dns>',
      'a DNS name the server is reached at (repeat); default: this host name and localhost',
      collect,
    )
    .option(
      '--address <ip>',
      'an IP address the server is reached at (repeat); default: the first LAN address, 127.0.0.1 and ::1',
      collect,
    )
    .option(
      '--days <n>',
      'days the certificate is valid',
      integerFlag('--days', 1, 36500),
      DEFAULT_CERTIFICATE_DAYS,
    )
    .action(async (flags: TlsGenerateFlags) => runTlsGenerate(flags))

  addExpiryOption(
    addRootOptions(
      key
        .command('tls-pin')
        .description(
          "pin the server's HTTPS certificate in a new key list: nodes with a root key then accept only pinned certificates",
        )
        .requiredOption('--cert <file>', 'the certificate (PEM), e.g. DIR/tls.crt')
        .option(
          '--replace',
          'pin this certificate only, dropping the pins the key list holds (the last step of a rotation)',
          false,
        ),
    ),
  ).action(async (flags: TlsPinFlags) => runTlsPin(flags))
}

/** The names and addresses a certificate is for: the flags, or this host's. */
export function certificateNames(flags: Pick<TlsGenerateFlags, 'name' | 'address'>): {
  names: string[]
  addresses: string[]
} {
  if (flags.name === undefined && flags.address === undefined) {
    const lan = firstLanAddress()
    return {
      names: [...new Set([hostname(), 'localhost'])],
      addresses: [...(lan ? [lan] : []), '127.0.0.1', '::1'],
    }
  }
  for (const address of flags.address ?? []) {
    if (isIP(address) === 0) {
      throw new ImageSwarmError(
        'E_USAGE',
        `--address ${JSON.stringify(address)} is not an IP address`,
        {
          path: '--address',
          hint: 'give DNS names with --name, addresses with --address (e.g. --address 10.0.0.1)',
        },
      )
    }
  }
  for (const name of flags.name ?? []) {
    if (!/^[A-Za-z0-9*]([A-Za-z0-9.-]{0,252})$/.test(name) || isIP(name) !== 0) {
      throw new ImageSwarmError('E_USAGE', `--name ${JSON.stringify(name)} is not a DNS name`, {
        path: '--name',
        hint: 'for example --name imageserver.lab.example; give IP addresses with --address',
      })
    }
  }
  return { names: flags.name ?? [], addresses: flags.address ?? [] }
}

/**
 * `imageswarm key tls-generate`: an ECDSA P-256 key made by Node's crypto, and a
 * self-signed certificate for it made by `openssl req` (Node's crypto cannot make X.509
 * certificates; openssl is on every Debian image server, and a certificate library in the
 * server's dependencies would be more code to trust than one command). Never writes over a
 * file: both are made under temporary names and linked into place only when both exist.
 */
export async function runTlsGenerate(flags: TlsGenerateFlags): Promise<void> {
  const dir = resolve(flags.output)
  const certPath = join(dir, TLS_FILES.certificate)
  const keyPath = join(dir, TLS_FILES.privateKey)
  const present = [certPath, keyPath].filter((path) => existsSync(path))
  if (present.length > 0) {
    throw new ImageSwarmError('E_KEYS_EXIST', `exists already: ${present.join(', ')}`, {
      operation: 'generate TLS certificate',
      path: present[0],
      hint: 'imageswarm never replaces a key: choose another --output (a rotation pins the new certificate beside the old one)',
    })
  }
  const { names, addresses } = certificateNames(flags)
  const subjectAltName = [
    ...names.map((name) => `DNS:${name}`),
    ...addresses.map((address) => `IP:${address}`),
  ].join(',')
  await mkdir(dir, { recursive: true, mode: 0o700 })
  const tmpKey = join(dir, `.${TLS_FILES.privateKey}.${process.pid}.tmp`)
  const tmpCert = join(dir, `.${TLS_FILES.certificate}.${process.pid}.tmp`)
  try {
    const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' })
    await writeNewFile(
      tmpKey,
      privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
      0o600,
    )
    await runOpenssl([
      'req',
      '-x509',
      '-new',
      '-key',
      tmpKey,
      '-out',
      tmpCert,
      '-sha256',
      '-days',
      String(flags.days),
      '-subj',
      `/CN=${names[0] ?? addresses[0] ?? 'imageswarm'}`,
      ...(subjectAltName ? ['-addext', `subjectAltName=${subjectAltName}`] : []),
    ])
    // link fails with EEXIST where a file appeared meanwhile: nothing is replaced.
    await link(tmpKey, keyPath)
    await link(tmpCert, certPath)
  } finally {
    await rm(tmpKey, { force: true })
    await rm(tmpCert, { force: true })
  }
  const { sha256, validTo } = readCertificatePem(await readFile(certPath), certPath)
  print([
    `certificate   ${certPath} (for ${subjectAltName.replaceAll(',', ', ')}; until ${validTo})`,
    `private key   ${keyPath} (0600; stays on the server)`,
    `sha256        ${sha256}`,
    `next          imageswarm key tls-pin --keys DIR --cert ${certPath}, then serve --tls-cert ${certPath} --tls-key ${keyPath}`,
  ])
}

async function runOpenssl(args: string[]): Promise<void> {
  try {
    await promisify(execFile)('openssl', args, { timeout: 30_000 })
  } catch (err) {
    if (errnoOf(err) === 'ENOENT') {
      throw new ImageSwarmError('E_TOOL_MISSING', 'openssl is not installed', {
        operation: 'generate TLS certificate',
        path: 'openssl',
        hint: 'install it (apt-get install openssl), or bring a certificate of your own to serve --tls-cert',
        cause: err,
      })
    }
    const stderr = String((err as { stderr?: unknown }).stderr ?? '').trim()
    throw new ImageSwarmError('E_TOOL_MISSING', `openssl req failed: ${stderr || String(err)}`, {
      operation: 'generate TLS certificate',
      path: 'openssl',
      hint: 'check that openssl is OpenSSL 1.1.1 or newer (-addext); or bring a certificate of your own',
      cause: err,
    })
  }
}

/**
 * `imageswarm key tls-pin`: a new key list (version + 1, root-signed) whose
 * `tlsCertificates` pins `--cert` beside the certificates pinned already, or alone with
 * `--replace`.
 */
export async function runTlsPin(flags: TlsPinFlags, now = new Date()): Promise<void> {
  const certPath = resolve(flags.cert)
  let pem: Buffer
  try {
    pem = await readFile(certPath)
  } catch (err) {
    throw new ImageSwarmError(
      'E_KEY_FILE_INVALID',
      `certificate ${certPath} cannot be read (${errnoOf(err) ?? String(err)})`,
      {
        operation: 'read TLS certificate',
        path: certPath,
        hint: 'give the certificate the server serves (--tls-cert), e.g. DIR/tls.crt from imageswarm key tls-generate',
        cause: err,
      },
    )
  }
  const certificate = readCertificatePem(pem, certPath)
  const keys = await openKeysToChange(flags, now)
  const previous = keys.keyList.tlsCertificates ?? []
  if (!flags.replace && pinsOf(keys.keyList).includes(certificate.sha256)) {
    throw new ImageSwarmError(
      'E_USAGE',
      `certificate ${certificate.sha256} is pinned already (key list version ${keys.keyList.version})`,
      { path: '--cert', hint: 'nothing to do; --replace drops the other pins' },
    )
  }
  const entry = {
    sha256: certificate.sha256,
    note: `${certificate.subjectAltName ?? 'no subjectAltName'}; until ${certificate.validTo}`.slice(
      0,
      200,
    ),
  }
  const kept = flags.replace ? [] : previous.filter((pin) => pin.sha256 !== entry.sha256)
  // The key list holds at most 16 pins (a rotation needs two).
  if (kept.length + 1 > 16) {
    throw new ImageSwarmError('E_USAGE', `the key list pins ${kept.length} certificates already`, {
      path: '--cert',
      hint: 'drop the certificates no server uses any more with --replace',
    })
  }
  const root = await loadRootKey(flags, keys)
  const keyList = await signNext(keys, root, {
    now,
    expires: daysFrom(now, flags.expiresDays),
    tlsCertificates: [...kept, entry],
  })
  const dropped = previous.filter((pin) => pin.sha256 !== entry.sha256 && flags.replace)
  print([
    `pinned        ${entry.sha256} (${certPath})`,
    `key list      version ${keyList.version}, expires ${keyList.expires}: publish it (copy the key directory to the server); nodes accept only pinned certificates once they have it`,
    `pins          ${pinsOf(keyList).join(', ')}`,
    ...(dropped.length > 0 ? [`dropped       ${dropped.map((pin) => pin.sha256).join(', ')}`] : []),
  ])
}
