/**
 * Publishing attachments, for groups whose admin set `attachments: true` on
 * the bridge: the bridge decrypts the file and writes it under an
 * unguessable name in a directory the operator serves read-only at
 * `baseUrl` (IRC and XMPP rooms get a link). Off unless the config has a
 * `files` section; bounded per file, in total, and in time.
 */
import { randomBytes } from "node:crypto";
import { mkdirSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { z } from "zod";

export const filesConfigSchema = z
  .object({
    /** Where decrypted files are written; serve it read-only at `baseUrl`. */
    dir: z.string().min(1),
    /** The public URL of `dir` (no trailing slash needed). */
    baseUrl: z.string().url(),
    /** Larger files are announced by name and size only. @default 10 MiB */
    maxFileBytes: z
      .number()
      .int()
      .positive()
      .default(10 * 1024 * 1024),
    /** What the directory may hold in all; beyond it, files are announced only. @default 1 GiB */
    maxTotalBytes: z
      .number()
      .int()
      .positive()
      .default(1024 * 1024 * 1024),
    /** Files are deleted this long after they were published. @default 168 (a week) */
    keepHours: z.number().positive().default(168),
  })
  .strict();

export type FilesConfig = z.infer<typeof filesConfigSchema>;

/** What became of one attachment. */
export type Publication = { url: string } | { withheld: string };

/** How often expired files are looked for, at most. */
const sweepEveryMs = 60 * 60_000;

/** A file name safe to put in a path and a URL: its last path segment, printable, at most 100 characters. */
export function safeFileName(name: string | undefined): string {
  const base = (name ?? "").split(/[/\\]/).pop() ?? "";
  const cleaned = base
    .replace(/[^\p{L}\p{N}._ -]/gu, "_")
    .replace(/^\.+/, "")
    .slice(0, 100);
  return cleaned.trim() || "file";
}

export class FilePublisher {
  private total = 0;
  private readonly sweeper: NodeJS.Timeout;

  constructor(private readonly config: FilesConfig) {
    mkdirSync(config.dir, { recursive: true, mode: 0o755 });
    this.sweep();
    const keepMs = config.keepHours * 3_600_000;
    this.sweeper = setInterval(() => this.sweep(), Math.min(sweepEveryMs, Math.max(1_000, keepMs / 4)));
    this.sweeper.unref();
  }

  /** Bytes the directory holds now. */
  get bytes(): number {
    return this.total;
  }

  /**
   * Publishes one attachment of `size` bytes (the sender's stated size):
   * checks the caps before anything is downloaded, then decrypts it with
   * `download` and writes it.
   */
  async publish(name: string | undefined, size: number, download: () => Promise<Uint8Array>): Promise<Publication> {
    if (size > this.config.maxFileBytes)
      return { withheld: `larger than the ${this.config.maxFileBytes}-byte limit for published files` };
    if (this.total + size > this.config.maxTotalBytes) this.sweep();
    if (this.total + size > this.config.maxTotalBytes) return { withheld: "the bridge's file space is full" };
    const bytes = await download();
    if (bytes.length > this.config.maxFileBytes)
      return { withheld: `larger than the ${this.config.maxFileBytes}-byte limit for published files` };
    const token = randomBytes(16).toString("hex");
    const fileName = safeFileName(name);
    mkdirSync(join(this.config.dir, token), { mode: 0o755 });
    writeFileSync(join(this.config.dir, token, fileName), bytes, { mode: 0o644 });
    this.total += bytes.length;
    return { url: `${this.config.baseUrl.replace(/\/+$/, "")}/${token}/${encodeURIComponent(fileName)}` };
  }

  /** Deletes what is older than `keepHours`, and recounts the total. */
  sweep(): void {
    const cutoff = Date.now() - this.config.keepHours * 3_600_000;
    let total = 0;
    for (const entry of readdirSync(this.config.dir, { withFileTypes: true })) {
      if (!entry.isDirectory()) continue;
      const dir = join(this.config.dir, entry.name);
      if (statSync(dir).mtimeMs < cutoff) {
        rmSync(dir, { recursive: true, force: true });
        continue;
      }
      for (const file of readdirSync(dir)) total += statSync(join(dir, file)).size;
    }
    this.total = total;
  }

  stop(): void {
    clearInterval(this.sweeper);
  }
}
