/**
 * @zimchat/testing/signal: libsignal without a database. In-memory protocol
 * stores, a wire-level test device ({@link SignalDevice}) that makes genuine
 * registration bodies, key uploads and ciphertexts, and fixtures made once
 * and reused (account keys, a Whisper message, two parties with a session).
 * @packageDocumentation
 */
export {
  MemoryIdentityStore,
  MemoryKyberPreKeyStore,
  MemoryPreKeyStore,
  MemorySenderKeyStore,
  MemorySessionStore,
  MemorySignedPreKeyStore,
} from "./signal-stores.js";
export { SignalDevice, type SealedOpened } from "./signal-device.js";
export {
  MemoryParty,
  createAccountKeys,
  createWhisperFixture,
  type AccountKeys,
  type WhisperFixture,
} from "./signal-fixture.js";
