/**
 * @zimchat/testing/chat-servers: real IRC (ngircd) and XMPP (Prosody)
 * servers for bridge tests, each a child process with a throwaway config on
 * free loopback ports, stopped by PID. Tests skip with
 * `ngircdAvailable().reason` / `prosodyAvailable().reason` where the binaries
 * are missing; CI (`.ci/run`) installs them.
 * @packageDocumentation
 */
export { ngircdAvailable, startNgircd, type NgircdOptions, type NgircdServer } from "./ngircd.js";
export { prosodyAvailable, startProsody, type ProsodyOptions, type ProsodyServer } from "./prosody.js";
export { chatServerSkip, type Availability, type ChatServerProcess } from "./server-process.js";
