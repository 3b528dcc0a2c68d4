/**
 * `npm run bench`: the bare Socket.IO relay baseline and the homeserver's real
 * delivery path, measured in one run. With `--json`, the last stdout line is
 * the summary object.
 */
import { parseBenchOptions } from "./options.js";
import { formatReport, summarize } from "./report.js";
import { log, runBench } from "./run.js";

async function main(): Promise<void> {
  const options = parseBenchOptions(process.argv.slice(2));
  const result = await runBench(options);
  const summary = summarize(result);
  process.stdout.write(`${formatReport(summary)}\n`);
  if (options.json) process.stdout.write(`${JSON.stringify(summary)}\n`);
}

try {
  await main();
  // Sockets closing in the background must not hold the process open.
  process.exit(0);
} catch (error) {
  log(`failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`);
  process.exit(1);
}
