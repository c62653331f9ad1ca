import { join } from 'node:path';

/** The job directory layout of the module contract (ION-CONTRACT.md). */
export interface JobLayout {
  base: string;
  inData: string;
  eventMeta: string;
  outData: string;
  insights: string;
  outEvents: string;
}

export function jobLayout(base: string): JobLayout {
  return {
    base,
    inData: join(base, 'in', 'data'),
    eventMeta: join(base, 'in', 'eventmeta.json'),
    outData: join(base, 'out', 'data'),
    insights: join(base, 'out', 'insights.json'),
    outEvents: join(base, 'out', 'events'),
  };
}
