import { describe, expect, it } from 'vitest';
import { splitEnv } from './protocol.js';

describe('splitEnv', () => {
  it('sends the contract variables and the trace context per job, and keeps the rest for the process', () => {
    const { processEnv, jobEnv } = splitEnv({
      PATH: '/usr/bin',
      MODEL: 'small',
      ION_MODULE: 'detect',
      HANDLER_BASE_DIR: '/ion',
      ION_BASE_DIR: '/ion',
      ION_EVENT_ID: 'e1',
      ION_EVENT_TYPE: 't',
      ION_CORRELATION_ID: 'c1',
      ION_PARENT_EVENT_ID: '',
      ION_ATTEMPT: '2',
      TRACEPARENT: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01',
      TRACESTATE: 'ion=1',
      BAGGAGE: 'k=v',
    });
    // What differs between two attempts of a module never reaches the pool key.
    expect(processEnv).toEqual({ PATH: '/usr/bin', MODEL: 'small', ION_MODULE: 'detect' });
    expect(Object.keys(jobEnv).sort()).toEqual(
      [
        'BAGGAGE',
        'HANDLER_BASE_DIR',
        'ION_ATTEMPT',
        'ION_BASE_DIR',
        'ION_CORRELATION_ID',
        'ION_EVENT_ID',
        'ION_EVENT_TYPE',
        'ION_PARENT_EVENT_ID',
        'TRACEPARENT',
        'TRACESTATE',
      ].sort(),
    );
  });
});
