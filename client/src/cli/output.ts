import type { CliEvent } from "./cli-events.js";
import { isDiagnostic, renderEvent } from "./render.js";

/** Lets an interactive screen tidy up around each line (clear the prompt, redraw it). */
export interface OutputHooks {
  before(): void;
  after(): void;
}

/** Where the CLI reports: JSON lines on stdout with `--json`, otherwise text (errors and warnings on stderr). */
export class Output {
  hooks: OutputHooks | null = null;

  constructor(
    readonly json: boolean,
    /**
     * Whether stdout takes ANSI escape codes (a terminal, no NO_COLOR): see `useColour` in terminal.ts. @default false
     */
    readonly colour = false,
    private readonly stdout: NodeJS.WritableStream = process.stdout,
    private readonly stderr: NodeJS.WritableStream = process.stderr,
  ) {}

  emit(event: CliEvent): void {
    const text = this.json ? JSON.stringify(event) : renderEvent(event);
    if (text === null) return;
    const stream = !this.json && isDiagnostic(event) ? this.stderr : this.stdout;
    this.hooks?.before();
    stream.write(`${text}\n`);
    this.hooks?.after();
  }
}
