import multipart from '@fastify/multipart';
import type { FastifyInstance } from 'fastify';
import { IonError } from '../../core/errors.js';
import {
  binaryCloudEvent,
  CLOUDEVENTS_PATH,
  cloudEventPublication,
  structuredCloudEvent,
} from '../gateway/cloudevents.js';
import { metadataFromBody } from '../gateway/json.js';
import { readMultipart, type Upload } from '../gateway/multipart.js';
import {
  checkEventType,
  DEFAULT_GATEWAY_MAX_FILE_BYTES,
  gatewayResponses as responses,
  idempotencyKeyOf,
  invalid,
  mediaTypeOf,
  replyPublished,
} from '../gateway/shared.js';
import type { RouteDeps } from './deps.js';

export { CLOUDEVENTS_PATH } from '../gateway/cloudevents.js';
export { DEFAULT_GATEWAY_MAX_FILE_BYTES } from '../gateway/shared.js';

/**
 * The HTTP gateway: `POST /v1/gateway/:eventType` turns a JSON or multipart request into a
 * root event, and `POST /v1/gateway/cloudevents` accepts CloudEvents 1.0 in binary and
 * structured mode. Each is registered in a scope of its own, so its body parsers
 * (multipart; raw streams for CloudEvent data) apply to it alone.
 */
export function registerGateway(
  app: FastifyInstance,
  deps: Pick<RouteDeps, 'control' | 'gatewayMaxFileBytes'>,
): void {
  const { events, blobs } = deps.control;
  const limitBytes = deps.gatewayMaxFileBytes ?? DEFAULT_GATEWAY_MAX_FILE_BYTES;

  void app.register(async (scope) => {
    await scope.register(multipart, { throwFileSizeLimit: true });
    scope.post('/v1/gateway/:eventType', {
      config: { streamedUpload: true },
      schema: {
        params: {
          type: 'object',
          required: ['eventType'],
          properties: { eventType: { type: 'string', minLength: 1, maxLength: 200 } },
        },
        response: responses,
      },
      handler: async (request, reply) => {
        const { eventType } = request.params as { eventType: string };
        checkEventType(eventType, 'the path');
        if (request.headers['ce-specversion'] !== undefined) {
          throw invalid(
            `a CloudEvent must be sent to POST ${CLOUDEVENTS_PATH}, where its type comes from ce-type`,
            'headers.ce-specversion',
            'CloudEvents go to the cloudevents route',
          );
        }
        const idempotencyKey = idempotencyKeyOf(request);
        const mediaType = mediaTypeOf(request);
        let upload: Upload;
        if (request.isMultipart()) {
          upload = await readMultipart(request, blobs, limitBytes);
        } else if (mediaType === 'application/json') {
          // JSON bodies keep the server's bodyLimit (the Fastify parser applies it).
          upload = { data: metadataFromBody(request.body), files: [] };
        } else if (mediaType === '' && request.body === undefined) {
          upload = { data: [], files: [] };
        } else {
          throw new IonError(
            'unsupported_media_type',
            `the gateway accepts application/json (metadata) or multipart/form-data (files and metadata), not ${mediaType}`,
          );
        }
        const published = await events.publish({
          type: eventType,
          data: upload.data,
          files: upload.files,
          ...(idempotencyKey === undefined ? {} : { idempotencyKey }),
        });
        return replyPublished(reply, published);
      },
    });
  });

  void app.register((scope, _options, done) => {
    // Structured mode is JSON under its own media type; batched mode is refused below.
    scope.addContentTypeParser(
      ['application/cloudevents+json', 'application/cloudevents-batch+json'],
      { parseAs: 'string' },
      scope.getDefaultJsonParser('error', 'error'),
    );
    // Binary mode: any other data arrives as a stream and goes to the blob store as it is.
    scope.removeContentTypeParser('text/plain');
    scope.addContentTypeParser('*', (_request, payload, done) => done(null, payload));
    scope.post(CLOUDEVENTS_PATH, {
      config: { streamedUpload: true },
      schema: { response: responses },
      handler: async (request, reply) => {
        const mediaType = mediaTypeOf(request);
        if (mediaType === 'application/cloudevents-batch+json') {
          throw new IonError(
            'unsupported_media_type',
            'batched CloudEvents are not accepted; send one event per request',
          );
        }
        const ce =
          mediaType === 'application/cloudevents+json'
            ? structuredCloudEvent(request.body)
            : binaryCloudEvent(request, limitBytes);
        const publication = await cloudEventPublication(ce, blobs);
        const source = ce.attributes.get('source')!;
        const id = ce.attributes.get('id')!;
        // A redelivered CloudEvent (same source and id) is the same root event.
        const published = await events.publish({
          ...publication,
          idempotencyKey: `cloudevent:${JSON.stringify([source, id])}`,
        });
        return replyPublished(reply, published);
      },
    });
    done();
  });
}
