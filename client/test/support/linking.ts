import { join } from "node:path";
import { SqliteDeviceStore, ZimClient } from "../../src/index.js";
import { deviceDir } from "@zimchat/testing/spawn";

/**
 * Links a new device to `primary`'s account through the real flow (the URI handed over in-process, as a QR scan would).
 */
export async function linkDevice(
  serverUrl: string,
  primary: ZimClient,
  name = `${primary.local.username}-${Date.now()}`,
): Promise<ZimClient> {
  let approval: Promise<void> | undefined;
  const linked = await ZimClient.link({
    serverUrl,
    store: new SqliteDeviceStore(join(deviceDir, `${name}.db`)),
    pollIntervalMs: 50,
    onLinkCode: ({ uri }) => {
      approval = primary.approveLink(uri);
    },
  });
  await approval;
  return linked;
}
