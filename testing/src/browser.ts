/**
 * @zimchat/testing/browser: a real headless Chromium for the web client's
 * tests, driven by playwright-core with Debian's `/usr/bin/chromium` (no
 * browser download). Tests skip with {@link browserSkip} where Chromium is
 * missing; CI (`.ci/run`) installs it and makes a missing one a failure.
 * @example
 * const skip = browserSkip();
 * describe("web UI", { skip }, () => {
 *   let browser: Browser;
 *   before(async () => (browser = await launchChromium()));
 *   after(() => browser.close());
 * });
 * @packageDocumentation
 */
import { accessSync, constants } from "node:fs";
import { chromium, type Browser, type LaunchOptions } from "playwright-core";
import type { Availability } from "./chat-servers/index.js";

export type { Browser, BrowserContext, Page } from "playwright-core";

/** Where Chromium is looked for, in order: `ZIMCHAT_TEST_CHROMIUM`, then Debian's and other distributions' paths. */
const candidates = (): string[] =>
  [
    process.env.ZIMCHAT_TEST_CHROMIUM,
    "/usr/bin/chromium",
    "/usr/bin/chromium-browser",
    "/usr/bin/google-chrome",
  ].filter((path): path is string => Boolean(path));

/** The Chromium executable on this machine, or undefined. */
export function chromiumPath(): string | undefined {
  for (const path of candidates()) {
    try {
      accessSync(path, constants.X_OK);
      return path;
    } catch {
      // not here
    }
  }
  return undefined;
}

/** Whether Chromium can start here, and if not, what to install. */
export function chromiumAvailable(): Availability {
  if (chromiumPath()) return { available: true, reason: undefined };
  return {
    available: false,
    reason:
      "Chromium is not installed (apt-get install --no-install-recommends chromium, or set ZIMCHAT_TEST_CHROMIUM to a Chromium or Chrome executable)",
  };
}

/**
 * Why browser tests skip here, or undefined when they run. The rule of the
 * chat-server tests: once per suite (the SQLite pass), and never for a missing
 * browser where it must be present (`ZIMCHAT_TEST_BROWSER=required`, or
 * `ZIMCHAT_TEST_CHAT_SERVERS=required` as `.ci/run` exports): the launch then
 * fails and says what is missing.
 */
export function browserSkip(): string | undefined {
  if (process.env.ZIMCHAT_TEST_DATABASE_URL?.startsWith("postgres"))
    return "the browser tests run once, in the SQLite pass of the suite";
  if (process.env.ZIMCHAT_TEST_BROWSER === "required" || process.env.ZIMCHAT_TEST_CHAT_SERVERS === "required")
    return undefined;
  return chromiumAvailable().reason;
}

/**
 * Launches headless Chromium (the machine's own, see {@link chromiumPath}).
 * Close it in `after`; playwright-core also kills it when the test process exits.
 */
export async function launchChromium(options: LaunchOptions = {}): Promise<Browser> {
  const executablePath = chromiumPath();
  if (!executablePath) throw new Error(chromiumAvailable().reason);
  return chromium.launch({ executablePath, headless: true, timeout: 60_000, ...options });
}
