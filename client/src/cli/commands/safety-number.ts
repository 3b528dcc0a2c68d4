import type { CliEvent } from "../cli-events.js";
import type { CommonOptions } from "../options.js";
import { terminalQr } from "../qr.js";
import { runCommand } from "../run.js";
import { withSession, type Session } from "../session.js";

/** The safety number with `user` as an event; with the QR code drawn unless the output is JSON. */
export async function safetyNumberEvent(session: Session, user: string): Promise<CliEvent> {
  const peer = await session.resolveUser(user);
  const number = await session.client.safetyNumber(peer.uuid);
  const trust = await session.client.trustState(peer.uuid);
  const qr = session.output.json ? {} : { qr: await terminalQr(number.scannable, session.output.colour) };
  return { type: "safetyNumber", user: peer.name, ...number, verified: trust?.verified ?? false, ...qr };
}

/** `zimchat-chat safety-number <user>`: the 60 digits in groups of five, and a QR code of the scannable payload. */
export async function showSafetyNumber(user: string, options: CommonOptions): Promise<void> {
  await runCommand(options, (output) =>
    withSession(options.profile, output, async (session) => output.emit(await safetyNumberEvent(session, user))),
  );
}
