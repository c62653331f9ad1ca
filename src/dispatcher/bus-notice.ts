/**
 * The bus message format moved to `src/bus/message-format.ts` (the relay must not import the
 * dispatcher). This re-export keeps importers outside the dispatcher's area working until
 * they import the new place.
 */
export { noticeMessage, parseNotice, type EventNotice } from '../bus/message-format.js';
