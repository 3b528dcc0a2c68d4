import type { CommonOptions } from "../options.js";
import { runCommand } from "../run.js";
import { withSession } from "../session.js";
import { untilInterrupted } from "../wait.js";

/** `zimchat-chat receive` options. */
export interface ReceiveOptions extends CommonOptions {
  /** Seconds to stay connected for live messages after the queue. @default 0 */
  wait: number;
}

/** `zimchat-chat receive`: drains the queue (and with --wait, stays for live messages). */
export async function receive(options: ReceiveOptions): Promise<void> {
  await runCommand(options, (output) =>
    withSession(options.profile, output, async ({ client, received }) => {
      await client.connect();
      output.emit({ type: "queueEmpty", received: received() });
      if (options.wait > 0) await untilInterrupted(options.wait * 1000);
    }),
  );
}
