/**
 * @zimchat/testing/spawn: a real homeserver as a child process (`zimchat
 * serve`, restartable on the same database), and client devices on SQLite
 * stores. Loads no server code into the test process.
 * @packageDocumentation
 */
export {
  federatedHomeserver,
  freePort,
  next,
  spawnZimchatServe,
  startHomeserver,
  zimchatBin,
  type FederatedHomeserver,
  type Homeserver,
  type ServeProcess,
} from "./child-homeserver.js";
export { deviceDir, inbox, registerDevice, until } from "./devices.js";
