import { execFile } from 'node:child_process';
import { open, rm, statfs } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

/**
 * A small tmpfs mounted on a directory, so the soak can fill the blob store's filesystem to
 * ENOSPC and free it again without touching the machine's disk. Mounting needs root (or
 * CAP_SYS_ADMIN); when it is refused, `mountTmpfs` says why and the soak reports the fault
 * kind as not injected rather than faking it.
 */
export interface Tmpfs {
  dir: string;
  /** Writes a filler file until the filesystem reports ENOSPC. Returns the bytes written. */
  fill(): Promise<number>;
  /** Removes the filler. */
  free(): Promise<void>;
  unmount(): Promise<void>;
}

export async function mountTmpfs(
  dir: string,
  sizeMb: number,
): Promise<Tmpfs | { refused: string }> {
  try {
    await run('mount', ['-t', 'tmpfs', '-o', `size=${sizeMb}m,mode=0755`, 'tmpfs', dir]);
  } catch (err) {
    return { refused: `mount -t tmpfs on ${dir} failed: ${(err as Error).message.trim()}` };
  }
  const filler = join(dir, '.soak-filler');
  return {
    dir,
    async fill() {
      const handle = await open(filler, 'a');
      const block = Buffer.alloc(1024 * 1024, 0x5a);
      let written = 0;
      try {
        for (;;) {
          const { bytesWritten } = await handle.write(block);
          written += bytesWritten;
          if (bytesWritten < block.length) break;
        }
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOSPC') throw err;
      }
      // Whatever is left is smaller than a block: take it too, byte by byte in 4 KiB steps.
      try {
        for (;;) await handle.write(Buffer.alloc(4096, 0x5a));
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOSPC') throw err;
      }
      await handle.close();
      const fs = await statfs(dir);
      if (fs.bavail > 2) throw new Error(`${dir} still has ${fs.bavail} free blocks after filling`);
      return written;
    },
    async free() {
      await rm(filler, { force: true });
    },
    async unmount() {
      await rm(filler, { force: true });
      // Lazy: a process still holding a file there must not make the soak fail to clean up.
      await run('umount', ['-l', dir]).catch(() => undefined);
    },
  };
}
