/**
 * `zimchat-chat`: a terminal chat on the ZimChat client SDK. The only module
 * that reads the environment (through commander's `.env()`).
 */
import { readFileSync } from "node:fs";
import { chatProgram } from "./program.js";

const { version } = JSON.parse(readFileSync(new URL("../../../package.json", import.meta.url), "utf8")) as {
  version: string;
};

await chatProgram(version, process.env).parseAsync(process.argv);
