/**
 * A TCP proxy to a real server whose connections can be silenced as a network partition silences
 * them: no reset, no close, bytes simply stop getting through (both ways). `cut()` silences every
 * connection open now and every one made until `heal()`; connections silenced stay silent after
 * the heal, as TCP's backed-off retransmissions keep them on a real network for tens of seconds,
 * while new connections get through. `silenceWhenSent(re)` silences the connection on which the
 * client next sends bytes matching `re` (e.g. a SUBSCRIBE: the subscriber's node cut off alone).
 */
import { connect, createServer, type Server, type Socket } from 'node:net';

export class TcpProxy {
  private server!: Server;
  private cutNow = false;
  private readonly silenced = new Set<Socket>();
  private readonly all = new Set<Socket>();
  private trigger: RegExp | null = null;
  port = 0;

  constructor(private readonly target: { host: string; port: number }) {}

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  async start(): Promise<void> {
    this.server = createServer((client) => {
      this.all.add(client);
      client.on('error', () => undefined);
      client.on('close', () => {
        this.all.delete(client);
        this.silenced.delete(client);
      });
      if (this.cutNow) {
        // Accepted, then nothing: as a host whose answers are lost.
        this.silenced.add(client);
        return;
      }
      const upstream = connect(this.target.port, this.target.host);
      upstream.on('error', () => client.destroy());
      client.on('close', () => upstream.destroy());
      upstream.on('close', () => client.destroy());
      client.on('data', (d: Buffer) => {
        if (this.trigger && this.trigger.test(d.toString('latin1'))) {
          this.trigger = null;
          this.silenced.add(client);
        }
        if (!this.silenced.has(client)) upstream.write(d);
      });
      upstream.on('data', (d: Buffer) => {
        if (!this.silenced.has(client)) client.write(d);
      });
    });
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', () => r()));
    this.port = (this.server.address() as { port: number }).port;
  }

  cut(): void {
    this.cutNow = true;
    for (const s of this.all) this.silenced.add(s);
  }

  /** New connections get through again; those silenced stay silent. */
  heal(): void {
    this.cutNow = false;
  }

  silenceWhenSent(re: RegExp): void {
    this.trigger = re;
  }

  /** Connections silenced so far and still open. */
  get silencedCount(): number {
    return this.silenced.size;
  }

  close(): void {
    for (const s of this.all) s.destroy();
    this.server.close();
  }
}
