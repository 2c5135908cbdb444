// onShutdown's stop and its deadline, in a process of their own (each exits when it is done).
import { describe, expect, it } from 'vitest';
import { projectFile, runModule } from '../setup/run-module';

/** A process that installs onShutdown with `stop` (JavaScript text) and sends itself SIGTERM. */
function stopWith(stop: string, deadlineMs: number): { status: number | null; stderr: string } {
  const r = runModule([
    `import { onShutdown } from ${JSON.stringify(projectFile('src/process-lifecycle.ts'))};`,
    `onShutdown(${stop}, ${deadlineMs});`,
    // Something that keeps the process alive, as a server's sockets do.
    'setInterval(() => {}, 1000);',
    "process.kill(process.pid, 'SIGTERM');",
  ]);
  return { status: r.status, stderr: r.stderr };
}

describe('onShutdown', () => {
  it('runs the stop and exits 0 when it finishes', () => {
    const r = stopWith('() => new Promise((resolve) => setTimeout(resolve, 50))', 5_000);
    expect(r.status).toBe(0);
    expect(r.stderr).not.toContain('did not finish');
  });

  it('exits 1 at its deadline when the stop never finishes (a Redis that is down), saying so', () => {
    const r = stopWith('() => new Promise(() => {})', 300);
    expect(r.status).toBe(1);
    expect(r.stderr).toContain('the graceful stop did not finish within 0.3 s');
  });
});
