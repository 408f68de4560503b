// direct.js - direct.html: media only, no signalling. The test carries the offer and the
// answer between two such pages itself, to check the measurements without the relay.
import { testState, startMedia, fail } from './common.js';

testState.role = new URLSearchParams(location.search).get('role') ?? 'direct';
startMedia()
  .then(() => (testState.signalling = 'media_ready'))
  .catch((err) => {
    testState.signalling = 'failed';
    fail('start', err);
  });
