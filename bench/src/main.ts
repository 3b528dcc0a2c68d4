/**
 * `npm run bench`: the bare Socket.IO relay baseline and the homeserver's real
 * delivery path, measured in one run. With `--json`, the last stdout line is
 * the summary object.
 */
import { parseBenchOptions } from "./options.js";
import { formatReport, summarize } from "./report.js";
import { log, runBench } from "./run.js";
import { formatClientPipeline, runClientPipeline } from "./client-pipeline.js";

async function main(): Promise<void> {
  const options = parseBenchOptions(process.argv.slice(2));
  const result = await runBench(options);
  const summary = summarize(result);
  process.stdout.write(`${formatReport(summary)}\n`);
  const client = options.relayOnly ? undefined : await runClientPipeline(options.quick, log);
  if (client) process.stdout.write(`\n${formatClientPipeline(client)}\n`);
  if (options.json) {
    const clientFigures = client
      ? { sdk_msgs_per_s: client.sdkMsgsPerSecond, raw_libsignal_msgs_per_s: client.rawMsgsPerSecond, client_pipeline_ratio: client.ratio }
      : { sdk_msgs_per_s: null, raw_libsignal_msgs_per_s: null, client_pipeline_ratio: null };
    process.stdout.write(`${JSON.stringify({ ...summary, ...clientFigures })}\n`);
  }
}

try {
  await main();
  // Sockets closing in the background must not hold the process open.
  process.exit(0);
} catch (error) {
  log(`failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`);
  process.exit(1);
}
