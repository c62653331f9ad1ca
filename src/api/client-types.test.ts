import { describe, expectTypeOf, it } from 'vitest';
import type * as app from '../app/control.js';
import type * as wire from './client-types.js';

// The client declares the wire format itself so it does not import the composition root
// (src/app). These checks fail to compile when the server's side drifts from it.
describe('client wire types', () => {
  it('match what the control layer returns and takes', () => {
    expectTypeOf<app.ApplyResult>().toEqualTypeOf<wire.ApplyResult>();
    expectTypeOf<app.ReplayRequest>().toEqualTypeOf<wire.ReplayRequest>();
    expectTypeOf<app.ReplayOutcome>().toEqualTypeOf<wire.ReplayOutcome>();
    expectTypeOf<app.DeadLetterSelector>().toEqualTypeOf<wire.DeadLetterSelector>();
  });
});
