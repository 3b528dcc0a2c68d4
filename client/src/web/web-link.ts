/**
 * Linking from the web daemon: a fresh profile becomes another device of an
 * existing account (`POST /api/link`: the link URI and its QR code for the
 * primary device to approve; the wait goes on in the background), and a
 * primary device approves another one (`POST /api/link/approve`). As
 * `zimchat-chat link` and `approve-link` do; see `client/src/linking.ts`.
 */
import QRCode from "qrcode";
import { ZimClient } from "../index.js";
import { CliError, toCliError } from "../cli/cli-error.js";
import { serverUrl } from "../cli/commands/register.js";
import type { Profile } from "../cli/profile.js";
import type { OpenSession } from "../cli/session.js";
import type { WebLinkCode } from "./api.js";
import { WebApiError, toWebApiError } from "./web-device.js";

/** What a link in progress reports, once. */
export interface LinkOutcome {
  /** Linked: the profile now holds the device (open it). */
  linked: () => void;
  /** Not linked (expired, cancelled, refused): nothing was kept. */
  failed: (error: WebApiError) => void;
  /** Linked, but the first pre-key upload failed (it is retried on the next connection). */
  warn: (message: string) => void;
}

/** A link waiting for the primary's approval. */
export interface PendingLink {
  code: WebLinkCode;
  /** Stops waiting (the profile is left as it was before). */
  cancel(): void;
  /** Settles once the link is over, linked or not. */
  done: Promise<void>;
}

/**
 * Starts linking `profile` to an existing account on `server`: resolves with
 * the link URI and its QR code as soon as the homeserver gave a code, and
 * keeps waiting for the primary's approval in the background (`outcome`).
 * @throws WebApiError for a bad server URL, a profile that holds a device, or a homeserver that refuses
 */
export async function startLink(
  profile: Profile,
  server: string,
  options: { allowInsecureHttp: boolean; pollIntervalMs?: number },
  outcome: LinkOutcome,
): Promise<PendingLink> {
  let url: string;
  try {
    url = serverUrl(server, options.allowInsecureHttp);
  } catch (error) {
    throw toWebApiError(error, { server });
  }
  const store = profile.openNewStore();
  const cancel = new AbortController();
  let shown: (code: WebLinkCode) => void = () => undefined;
  const codeShown = new Promise<WebLinkCode>((resolve) => (shown = resolve));
  const linking = ZimClient.link({
    serverUrl: url,
    store,
    allowInsecureHttp: options.allowInsecureHttp,
    signal: cancel.signal,
    ...(options.pollIntervalMs ? { pollIntervalMs: options.pollIntervalMs } : {}),
    onLinkCode: ({ uri, expiresAt }) => {
      void QRCode.toString(uri, { type: "svg", margin: 2 }).then((qrSvg) => shown({ uri, qrSvg, expiresAt }));
    },
  });
  let failure: WebApiError | undefined;
  let answered = false;
  const done = linking.then(
    async (client) => {
      remember(profile, store);
      await client.close();
      outcome.linked();
    },
    (error: unknown) => {
      // Nothing is kept of a link that did not finish, unless the server has the device (only the key upload failed).
      if (store.getLocal()?.deviceId) {
        outcome.warn(
          `linked, but the first pre-key upload failed (${toCliError(error, { server: url }).message}); it is retried on the next connection`,
        );
        remember(profile, store);
        store.close();
        outcome.linked();
        return;
      }
      store.close();
      profile.discardNewStore();
      failure = cancel.signal.aborted
        ? new WebApiError(409, "cancelled", "linking cancelled: this device was not linked", { cause: error })
        : toWebApiError(error, { server: url });
      // Before the code was shown, the failure is the answer to `POST /api/link` itself.
      if (answered) outcome.failed(failure);
    },
  );
  // The first answer: the code, or the failure that came before it (an unreachable or refusing homeserver).
  const code = await Promise.race([
    codeShown,
    done.then(() => {
      throw failure ?? new WebApiError(502, "server_error", "linking ended before the homeserver gave a link code");
    }),
  ]);
  answered = true;
  return { code, cancel: () => cancel.abort(), done };
}

/** The account's name for the profile's contacts, as `zimchat-chat link` keeps it. */
function remember(profile: Profile, store: ReturnType<Profile["openNewStore"]>): void {
  const local = store.getLocal();
  if (local?.uuid) profile.contacts.remember(local.uuid, local.username);
}

/**
 * `POST /api/link/approve`: the primary device (device 1) approves a new
 * device's link URI (typed or scanned).
 * @throws WebApiError `not_primary` (409), `invalid_argument` (400) for a URI that is not a link URI
 */
export async function approveLink(opened: OpenSession, uri: string): Promise<void> {
  const { client } = opened.session;
  const { deviceId, username } = client.local;
  try {
    if (deviceId !== 1)
      throw new CliError(
        "not_primary",
        `this is ${username}'s device ${deviceId}: only the primary device (device 1) can approve a new device`,
      );
    await client.approveLink(uri);
  } catch (error) {
    throw toWebApiError(error, opened.context);
  }
}
