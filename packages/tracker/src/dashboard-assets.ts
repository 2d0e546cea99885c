import { readdirSync, readFileSync } from 'node:fs'
import type { ServerResponse } from 'node:http'
import { createRequire } from 'node:module'
import { dirname, extname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
}

// The page talks only to this server: install networks are often offline, and a
// dashboard that pulled scripts from elsewhere would be a way in. uPlot sets inline
// styles on its own elements, hence 'unsafe-inline' for styles only.
const SECURITY_HEADERS = {
  'Content-Security-Policy':
    "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; base-uri 'none'; frame-ancestors 'none'; form-action 'none'",
  'X-Content-Type-Options': 'nosniff',
  'Referrer-Policy': 'no-referrer',
}

/**
 * The dashboard's static files, by URL path: the page's own files from the package's
 * `dashboard/` folder and uPlot's from its npm package, shipped with the server so the
 * page works without internet access. Only these paths are served, so no request can
 * name another file.
 */
export class DashboardAssets {
  readonly #files = new Map<string, string>()
  readonly #cache = new Map<string, Buffer>()

  constructor() {
    const pageDir = fileURLToPath(new URL('../dashboard/', import.meta.url))
    for (const name of readdirSync(pageDir)) {
      if (name === 'index.html') this.#files.set('/', join(pageDir, name))
      else if (TYPES[extname(name)] !== undefined)
        this.#files.set(`/assets/${name}`, join(pageDir, name))
    }
    const uplot = dirname(createRequire(import.meta.url).resolve('uplot/package.json'))
    this.#files.set('/assets/uplot.esm.js', join(uplot, 'dist', 'uPlot.esm.js'))
    this.#files.set('/assets/uplot.min.css', join(uplot, 'dist', 'uPlot.min.css'))
  }

  has(path: string): boolean {
    return this.#files.has(path)
  }

  /** Sends the file for `path`; false when there is none. HEAD gets the headers only. */
  send(path: string, head: boolean, res: ServerResponse): boolean {
    const file = this.#files.get(path)
    if (file === undefined) return false
    let body = this.#cache.get(file)
    if (body === undefined) {
      body = readFileSync(file)
      this.#cache.set(file, body)
    }
    res.writeHead(200, {
      ...SECURITY_HEADERS,
      'Content-Type': TYPES[extname(file)] ?? 'application/octet-stream',
      'Content-Length': body.length,
      // Small files, and a new server version may change them: check each time.
      'Cache-Control': 'no-cache',
    })
    res.end(head ? undefined : body)
    return true
  }
}
