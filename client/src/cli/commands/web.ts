import { spawn } from "node:child_process";
import { Profile } from "../profile.js";
import type { CommonOptions } from "../options.js";
import { runCommand } from "../run.js";
import { startWebDaemon } from "../../web/daemon.js";

/** `zimchat-chat web` options. */
export interface WebOptions extends CommonOptions {
  /** The listen address: 127.0.0.1 only (the parser refuses any other). @default "127.0.0.1" */
  host: string;
  /** The port; 0 picks a free one. @default 0 */
  port: number;
  /** Open the URL in the default browser. @default false */
  open: boolean;
  /** Allow registering on a plain http:// homeserver that is not on this machine. @default false */
  allowInsecureHttp: boolean;
}

/** Opens `url` in the user's browser (xdg-open, open, or start); failing quietly, as the URL is printed anyway. */
function openBrowser(url: string): void {
  const [command, args] =
    process.platform === "darwin"
      ? ["open", [url]]
      : process.platform === "win32"
        ? ["cmd", ["/c", "start", '""', url]]
        : ["xdg-open", [url]];
  try {
    const child = spawn(command, args, { detached: true, stdio: "ignore" });
    child.on("error", () => undefined);
    child.unref();
  } catch {
    // No browser opener: the printed URL is the way in.
  }
}

/** `zimchat-chat web`: serves the local web client until Ctrl-C (SIGINT) or SIGTERM. */
export async function web(options: WebOptions): Promise<void> {
  await runCommand(options, async (output) => {
    const daemon = await startWebDaemon({
      profile: options.profile,
      host: options.host,
      port: options.port,
      allowInsecureHttp: options.allowInsecureHttp,
    });
    const stopped = new Promise<void>((resolve) => {
      process.once("SIGINT", () => resolve());
      process.once("SIGTERM", () => resolve());
    });
    output.emit({
      type: "webReady",
      url: daemon.url,
      port: daemon.port,
      profile: options.profile,
      registered: new Profile(options.profile).hasStore(),
    });
    if (options.open) openBrowser(daemon.url);
    await stopped;
    await daemon.close();
    output.emit({ type: "webStopped" });
  });
}
