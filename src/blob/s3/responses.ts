import { Readable } from 'node:stream';

/** How the S3 blob store reads S3's answers: ranges served, and errors by name or status. */

/**
 * Guards against servers that serve more than the range asked for: s3rver reads the
 * `end` of `bytes=0-0` as absent and returns the whole object. The response's
 * Content-Range says what was served; a body starting elsewhere than asked is refused, and
 * one running past the (clamped) end is cut. With a compliant server this only parses a
 * header.
 */
export function clampToRange(
  body: Readable,
  range: { start: number; end: number },
  contentRange: string | undefined,
): Readable {
  const served = /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec(contentRange ?? '');
  const servedStart = served === null ? 0 : Number(served[1]);
  const servedEnd = served === null ? Number.POSITIVE_INFINITY : Number(served[2]);
  if (servedStart !== range.start) {
    body.destroy();
    throw new Error(
      `server answered range ${range.start}-${range.end} with ${contentRange ?? 'the whole object'}`,
    );
  }
  if (servedEnd <= range.end) return body;
  let remaining = range.end - range.start + 1;
  async function* take(chunks: AsyncIterable<Buffer>): AsyncGenerator<Buffer> {
    for await (const chunk of chunks) {
      if (chunk.length >= remaining) {
        yield chunk.subarray(0, remaining);
        return;
      }
      remaining -= chunk.length;
      yield chunk;
    }
  }
  return Readable.from(take(body), { objectMode: false });
}

export function errorName(err: unknown): string | undefined {
  return err instanceof Error ? err.name : undefined;
}

function httpStatus(err: unknown): number | undefined {
  if (typeof err !== 'object' || err === null || !('$metadata' in err)) return undefined;
  const meta = (err as { $metadata?: { httpStatusCode?: number } }).$metadata;
  return meta?.httpStatusCode;
}

export function isNotFound(err: unknown): boolean {
  // A missing bucket is a configuration error, not a missing blob (HeadObject cannot tell
  // them apart: its 404 has no body, but start() creates the bucket).
  const name = errorName(err);
  if (name === 'NoSuchBucket') return false;
  return name === 'NotFound' || name === 'NoSuchKey' || httpStatus(err) === 404;
}

export function isRangeNotSatisfiable(err: unknown): boolean {
  return errorName(err) === 'InvalidRange' || httpStatus(err) === 416;
}
