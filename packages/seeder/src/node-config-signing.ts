import {
  type ImageManifest,
  ImageSwarmError,
  isImageSwarmError,
  type NodeConfigBinding,
  type NodeInstallConfig,
} from '@imageswarm/core'

/** What signs node configs: the server's ManifestSigner (`serve --keys`). */
export interface NodeConfigSigner {
  /** Undefined while the key list accepts none of the server's signing keys. */
  signNodeConfig(config: NodeInstallConfig): { bytes: Buffer; signature: string } | undefined
}

/** A node config as served: its bytes and, from a signing server, their signature. */
export interface NodeConfigAnswer {
  config: NodeInstallConfig
  /** Undefined for an unsigned answer, which is sent as it always was (sendJson). */
  bytes?: Buffer
  signature?: string
}

export interface SignNodeConfigOptions {
  config: NodeInstallConfig
  /** The MAC the node asked with (lower case, colons). */
  mac: string | undefined
  /** The image's manifest as the server serves it now: signed when it has a serial. */
  manifest: ImageManifest | undefined
  signer: NodeConfigSigner | undefined
  /** The SHA-256 of an override's tar, packed as nodes get it. */
  overrideSha256: (name: string) => Promise<string>
  /** The SHA-256 of a post-install script as it is now. */
  postInstallSha256: (name: string) => Promise<string>
}

/**
 * Binds a node config to the node and the image version and signs it (docs/trust.md, "Signed
 * node configs"): the MAC it asked with, the signed manifest's serial and expiry, and the
 * SHA-256 of every override tar and post-install script it names.
 *
 * The signature is served at its own URL (`node.json.minisig?same query`), as the manifest's
 * and the key list's are, rather than in a response header: `curl` and stock `minisign -V`
 * check it as they check those, and the installer fetches it with the client's own request
 * code. That needs both requests to get the same bytes without the server keeping state, so
 * the document is a function of what the server holds: its expiry is the manifest's (not
 * "now + lifetime"), and ed25519 signatures are deterministic. What changes between the two
 * requests (a manifest signed again, an override repacked) makes them disagree; the installer
 * then fetches both once more.
 *
 * Unsigned (the plain config) without a signer, for an image without a signed manifest, or
 * while the key list accepts no signing key.
 */
export async function signNodeConfigAnswer(
  options: SignNodeConfigOptions,
): Promise<NodeConfigAnswer> {
  const { config, manifest, signer } = options
  if (!signer || manifest?.serial === undefined || manifest.expires === undefined) {
    return { config }
  }
  const binding: NodeConfigBinding = {
    mac: options.mac ?? null,
    serial: manifest.serial,
    expires: manifest.expires,
    overrideSha256: await digestsOf(config.overrides, options.overrideSha256),
    postInstallSha256: await digestsOf(config.postInstall, options.postInstallSha256),
  }
  const signed = signer.signNodeConfig({ ...config, signed: binding })
  if (!signed) return { config }
  return { config, bytes: signed.bytes, signature: signed.signature }
}

async function digestsOf(
  names: readonly string[],
  digest: (name: string) => Promise<string>,
): Promise<Record<string, string>> {
  const entries = await Promise.all(
    names.map(async (name) => {
      try {
        return [name, await digest(name)] as const
      } catch (err) {
        // A file listed a moment ago and gone now: not a 404, which a node takes for a server
        // without node configs (and installs the default layout); ask again shortly.
        if (isImageSwarmError(err) && err.code === 'E_IMAGE_NOT_FOUND') {
          throw new ImageSwarmError(
            'E_SERVER_ARCHIVE_CHANGED',
            `${name} went away while the node config was signed`,
            { operation: 'sign node config', path: name, hint: 'ask again', cause: err },
          )
        }
        throw err
      }
    }),
  )
  return Object.fromEntries(entries)
}
