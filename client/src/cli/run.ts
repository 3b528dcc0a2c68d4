import { toCliError } from "./cli-error.js";
import { Output } from "./output.js";
import { useColour } from "./terminal.js";

/**
 * Runs one command's work with its output, and turns a failure into an
 * error line (JSON or text) and exit code 1. The process then ends by
 * itself, once the last network write (a delivery receipt) is done.
 */
export async function runCommand(options: { json: boolean }, work: (output: Output) => Promise<void>): Promise<void> {
  const output = new Output(options.json, useColour(process.stdout, process.env));
  try {
    await work(output);
  } catch (error) {
    const failure = toCliError(error);
    output.emit({ type: "error", code: failure.code, message: failure.message });
    process.exitCode = 1;
  }
}
