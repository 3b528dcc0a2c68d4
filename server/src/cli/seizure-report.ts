import type { ServerConfig } from "../config.js";
import { parseDatabaseUrl } from "../db/database-url.js";
import { buildSeizureReport, SchemaDriftError, type SeizureReport } from "../seizure/report.js";

/** Exit codes of `zimchat seizure-report`. */
export const seizureExitCodes = {
  /** Every check passed (warnings allowed). */
  ok: 0,
  /** The schema has a table or column the report does not describe (or the reverse). */
  schemaDrift: 1,
  /** A check failed: the data holds something the design says it must not. */
  checkFailed: 2,
} as const;

/**
 * `zimchat seizure-report`: prints what someone holding this server's disk
 * would learn, and the checks of what they would not. Reads only; never
 * migrates or writes. Sets `process.exitCode` (see {@link seizureExitCodes}).
 */
export async function runSeizureReport(
  config: Pick<ServerConfig, "dataDir" | "databaseUrl">,
  json: boolean,
): Promise<void> {
  let report: SeizureReport;
  try {
    report = await buildSeizureReport({ dataDir: config.dataDir, target: parseDatabaseUrl(config.databaseUrl) });
  } catch (error) {
    if (!(error instanceof SchemaDriftError)) throw error;
    if (json)
      console.log(
        JSON.stringify({
          error: "schema_drift",
          message: error.message,
          undescribed: error.undescribed,
          missing: error.missing,
        }),
      );
    console.error(`zimchat seizure-report: ${error.message}`);
    process.exitCode = seizureExitCodes.schemaDrift;
    return;
  }
  console.log(json ? JSON.stringify(report, null, 2) : formatSeizureReport(report));
  process.exitCode = report.ok ? seizureExitCodes.ok : seizureExitCodes.checkFailed;
}

/** The report as text for an admin: what is held, table by table, then the checks. */
export function formatSeizureReport(report: SeizureReport): string {
  const lines: string[] = [];
  const width = Math.max(...report.tables.flatMap((t) => t.columns.map((c) => c.name.length)));
  lines.push("What someone who seizes this ZimChat server learns");
  lines.push(`database: ${report.database.provider}, ${report.database.location}`);
  lines.push(`data directory: ${report.dataDir}`);
  lines.push("");
  lines.push("HELD, in short");
  for (const line of report.held) lines.push(`  - ${line}`);
  lines.push("");
  lines.push("HELD, table by table");
  for (const table of report.tables) {
    lines.push(`  ${table.name} (${table.rows} rows): ${table.row}`);
    for (const column of table.columns) lines.push(`    ${column.name.padEnd(width)}  ${column.reveals}`);
  }
  for (const sequence of report.sequences)
    lines.push(`  sequence ${sequence.name} = ${sequence.value}: ${sequence.reveals}`);
  lines.push("");
  lines.push("FILES in the data directory");
  if (!report.files.length) lines.push("  (none)");
  for (const file of report.files) lines.push(`  ${file.path} (${file.bytes} bytes): ${file.reveals}`);
  lines.push("");
  lines.push("NOT HELD, checked against the data");
  for (const check of report.checks) lines.push(`  [${check.status.toUpperCase()}] ${check.title}: ${check.detail}`);
  lines.push("");
  const failed = report.checks.filter((c) => c.status === "fail").length;
  lines.push(
    failed ? `${failed} check(s) FAILED: the data holds something the design says it must not` : "every check passed",
  );
  return lines.join("\n");
}
