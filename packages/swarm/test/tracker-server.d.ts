// The swarm's tests run a real bittorrent-tracker server; its package has no types.
declare module 'bittorrent-tracker/server' {
  import { EventEmitter } from 'node:events'
  import type { Server as HttpServer } from 'node:http'
  export default class Server extends EventEmitter {
    constructor(options: { udp?: boolean; ws?: boolean; stats?: boolean; http?: boolean })
    http: HttpServer | null
    listen(port: number, hostname: string): void
    close(cb?: () => void): void
  }
}
