import { DEFAULT_SERVER_PORT, normalizeServerUrl } from '@imageswarm/client'
import { ImageSwarmError, serverUrl } from '@imageswarm/core'
import { readDashboardToken } from '@imageswarm/tracker'
import { type Command, Option } from 'commander'

/** Where `imageswarm images` and `nodes` ask when no `--server` is given. */
export const DEFAULT_STATUS_SERVER = `http://localhost:${DEFAULT_SERVER_PORT}`

/** `--server` and `--dashboard-token-file`, as `images` and `nodes` both take them. */
export function addDashboardClientOptions(command: Command): Command {
  return command
    .addOption(
      new Option('--server <url>', 'the image server to ask')
        .default(DEFAULT_STATUS_SERVER)
        .env('IMAGESWARM_SERVER'),
    )
    .addOption(
      new Option(
        '--dashboard-token-file <file>',
        "file holding the dashboard's read-only token, when the server has one (serve --dashboard-token-file)",
      ).env('IMAGESWARM_DASHBOARD_TOKEN_FILE'),
    )
    .option('--json', 'print what the server answered, as JSON', false)
}

/** How the status commands reach a server's dashboard API. */
export interface DashboardClientFlags {
  server: string
  /** The file holding the dashboard's read-only token: the one `serve --dashboard-token-file` reads. */
  dashboardTokenFile?: string
}

/**
 * Reads the server's dashboard JSON API (`/api/...`) as the page does, with the read-only
 * token as `Authorization: Bearer` when the server has one. Errors say what to do: a
 * server not running, a token missing or wrong, an image not published.
 *
 * @example
 *   const api = await DashboardClient.open({ server: 'http://10.0.0.1:6969' })
 *   const { images } = await api.get<{ images: SwarmSummary[] }>('/api/images')
 */
export class DashboardClient {
  readonly server: string
  readonly #token: string | undefined

  private constructor(server: string, token: string | undefined) {
    this.server = server
    this.#token = token
  }

  static async open(flags: DashboardClientFlags): Promise<DashboardClient> {
    // A bare address is the server's default port, as for `imageswarm install --server`.
    const server = normalizeServerUrl(flags.server, '--server')
    // The same file, and the same checks, as the server's --dashboard-token-file.
    const token =
      flags.dashboardTokenFile === undefined
        ? undefined
        : readDashboardToken(flags.dashboardTokenFile)
    return new DashboardClient(server, token)
  }

  /**
   * GETs `path` and returns its JSON, or undefined when the server has none there (an
   * image without versions: encrypted, or a delta's swarm) or answers with an error.
   */
  async tryGet<T>(path: string): Promise<T | undefined> {
    const headers: Record<string, string> = { accept: 'application/json' }
    if (this.#token !== undefined) headers.authorization = `Bearer ${this.#token}`
    try {
      const response = await fetch(serverUrl(this.server, path), { headers })
      return response.ok ? ((await response.json()) as T) : undefined
    } catch {
      return undefined
    }
  }

  /** GETs `path` and returns its JSON; throws an ImageSwarmError for anything but 200. */
  async get<T>(path: string): Promise<T> {
    const url = serverUrl(this.server, path)
    const headers: Record<string, string> = { accept: 'application/json' }
    if (this.#token !== undefined) headers.authorization = `Bearer ${this.#token}`
    const response = await fetch(url, { headers }).catch((err: unknown) => {
      throw new ImageSwarmError('E_SERVER_UNREACHABLE', `cannot reach ${url}: ${causeOf(err)}`, {
        operation: 'read the dashboard API',
        path: url,
        hint: 'check --server (or IMAGESWARM_SERVER) and that imageswarm serve runs there',
        cause: err,
      })
    })
    const body = (await response.json().catch(() => undefined)) as
      | { error?: { code?: string; message?: string; hint?: string } }
      | undefined
    if (response.ok && body !== undefined) return body as T
    const apiError = body?.error
    if (response.status === 401) {
      throw new ImageSwarmError(
        'E_SERVER_RESPONSE',
        `${url}: ${apiError?.message ?? 'the server wants its dashboard token'}`,
        {
          operation: 'read the dashboard API',
          path: url,
          hint: "give --dashboard-token-file FILE (or IMAGESWARM_DASHBOARD_TOKEN_FILE): the file the server's --dashboard-token-file names",
        },
      )
    }
    if (apiError?.code === 'E_UNKNOWN_IMAGE') {
      throw new ImageSwarmError('E_UNKNOWN_IMAGE', apiError.message ?? `${url}: unknown image`, {
        path: url,
        hint: 'imageswarm images lists the images the server publishes',
      })
    }
    throw new ImageSwarmError(
      'E_SERVER_RESPONSE',
      `${url} answered ${response.status}${apiError?.message ? `: ${apiError.message}` : ''}`,
      {
        operation: 'read the dashboard API',
        path: url,
        hint: apiError?.hint ?? 'is this an imageswarm server of this version? check --server',
      },
    )
  }
}

function causeOf(err: unknown): string {
  const cause = (err as { cause?: { code?: string; message?: string } }).cause
  return cause?.code ?? cause?.message ?? String(err)
}
