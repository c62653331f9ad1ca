import type { Settlement } from '../../src/core/trace-settled.js';
import type { DocumentStore } from '../../src/store/document-store.js';

/** A trace's settlement while it is not handled yet, as a list: [] once handled or absent. */
export async function openSettlementOf(
  store: DocumentStore,
  correlationId: string,
): Promise<Settlement[]> {
  const settlement = await store.getSettlement(correlationId);
  return settlement !== null && !settlement.done ? [settlement] : [];
}
