import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CopyObjectCommand,
  CreateMultipartUploadCommand,
  UploadPartCopyCommand,
  type CompletedPart,
  type S3Client,
} from '@aws-sdk/client-s3';

const MIB = 1024 * 1024;
const MAX_PARTS = 10_000;
const COPY_PART_BYTES = 512 * MIB;

/**
 * Server-side copy of `from` to `to` in `bucket`: one CopyObject up to
 * `multipartCopyThresholdBytes`, else a multipart copy of parts of at least 512 MiB,
 * `partConcurrency` at a time (S3's single CopyObject stops at 5 GiB). A failed multipart
 * copy is aborted, so it leaves no parts behind.
 */
export async function copyObject(
  client: S3Client,
  bucket: string,
  from: string,
  to: string,
  size: number,
  options: { multipartCopyThresholdBytes: number; partConcurrency: number },
): Promise<void> {
  const source = `${bucket}/${encodeKey(from)}`;
  if (size <= options.multipartCopyThresholdBytes) {
    await client.send(new CopyObjectCommand({ Bucket: bucket, Key: to, CopySource: source }));
    return;
  }
  const partBytes = Math.max(COPY_PART_BYTES, Math.ceil(size / MAX_PARTS));
  const created = await client.send(new CreateMultipartUploadCommand({ Bucket: bucket, Key: to }));
  const uploadId = created.UploadId;
  if (uploadId === undefined) throw new Error('CreateMultipartUpload returned no UploadId');
  try {
    const count = Math.ceil(size / partBytes);
    const parts: CompletedPart[] = new Array<CompletedPart>(count);
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < count) {
        const index = next++;
        const first = index * partBytes;
        const last = Math.min(first + partBytes, size) - 1;
        const res = await client.send(
          new UploadPartCopyCommand({
            Bucket: bucket,
            Key: to,
            UploadId: uploadId,
            PartNumber: index + 1,
            CopySource: source,
            CopySourceRange: `bytes=${first}-${last}`,
          }),
        );
        parts[index] = { ETag: res.CopyPartResult?.ETag, PartNumber: index + 1 };
      }
    };
    await Promise.all(Array.from({ length: Math.min(options.partConcurrency, count) }, worker));
    await client.send(
      new CompleteMultipartUploadCommand({
        Bucket: bucket,
        Key: to,
        UploadId: uploadId,
        MultipartUpload: { Parts: parts },
      }),
    );
  } catch (err) {
    await client
      .send(new AbortMultipartUploadCommand({ Bucket: bucket, Key: to, UploadId: uploadId }))
      .catch(() => undefined);
    throw err;
  }
}

/** CopySource must be URL-encoded; `/` separates segments and stays as is. */
function encodeKey(key: string): string {
  return key.split('/').map(encodeURIComponent).join('/');
}
