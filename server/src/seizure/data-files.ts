import { createReadStream, readdirSync, statSync } from "node:fs";
import { basename, join, relative, resolve, sep } from "node:path";

/** An IPv4 address (dotted quad, each part 0..255). */
export const ipv4Pattern =
  /(?<![\d.])(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(?![\d.])/;
/**
 * An IPv6 address: eight groups, or a `::` compressed form with at least one
 * group (so times like 12:34:56 and C++ `::` do not match).
 */
export const ipv6Pattern =
  /(?<![0-9A-Fa-f:])(?:(?:[0-9A-Fa-f]{1,4}:){7}[0-9A-Fa-f]{1,4}|(?:[0-9A-Fa-f]{1,4}:){1,7}:(?:[0-9A-Fa-f]{1,4}(?::[0-9A-Fa-f]{1,4}){0,5})?|::(?:[0-9A-Fa-f]{1,4}:){0,6}[0-9A-Fa-f]{1,4})(?![0-9A-Fa-f:])/;

/** Whether a string contains something shaped like an IP address. */
export function containsIpAddress(text: string): boolean {
  return ipv4Pattern.test(text) || ipv6Pattern.test(text);
}

/** What a file in the data directory is. */
export type DataFileKind = "database" | "private-key" | "public-key" | "log" | "plugin-file" | "blob";

/** A file found in the data directory (its path relative to it; never its content). */
export interface DataFile {
  path: string;
  kind: DataFileKind;
  bytes: number;
  /** What holding the file allows, in plain words. */
  reveals: string;
}

const databaseFileNotes: Record<string, string> = {
  "": "the SQLite database described above",
  "-wal":
    "the database's write-ahead log: recent writes not yet merged into it (rows of the same tables, including recently deleted ones until a checkpoint)",
  "-shm": "the write-ahead log's index (no row data)",
  "-journal": "the database's rollback journal (pages of the same tables)",
};

const privateKeyNotes: Record<string, string> = {
  "trust-root.key":
    "trust-root PRIVATE key: signs server certificates. With it someone can certify a server key of their own and then mint sender certificates this server's clients accept. It decrypts no message, and a certificate alone cannot make a message decrypt as coming from an existing contact (that needs the contact's identity and session keys). The admin may keep it offline once server.crt exists.",
  "server.key":
    "server-certificate PRIVATE key: signs sender certificates. With it someone can mint sender certificates for this server's accounts until the server certificate is replaced. It decrypts no message, and a certificate alone cannot make a message decrypt as coming from an existing contact (that needs the contact's identity and session keys).",
};

const federationKeyNote =
  "federation request-signing PRIVATE key (Ed25519, one per 5-day period): signs this server's requests to other servers. With it someone can speak to peers as this server until the key expires (7 days at most), provided they can also serve this server's document (its name's DNS and TLS). It decrypts no message and signs no sender certificate.";

const federationIdentityNote =
  "federation identity PRIVATE key (Ed25519, long-term, never rotated by itself): signs this server's federation document, which certifies the request-signing keys, and is what peers pin (`name=sha256:…` in their --federation-allow). With it (and control of this server's name) someone can impersonate this server to its peers, pinned ones included, with request keys of their own, until those peers re-pin. It decrypts no message and signs no sender certificate. After a seizure: delete it (a new identity key is made at the next start), print the new entry with `zimchat federation-identity`, and give it to every peer out of band to replace the old pin.";

const publicFileNotes: Record<string, string> = {
  "trust-root.pub": "trust-root PUBLIC key (what clients pin; public by design)",
  "server.crt": "server certificate: the server's PUBLIC key signed by the trust root (public by design)",
};

/**
 * Lists every file under the data directory and says what it is: the
 * inspected SQLite database (and its WAL and shared memory), key files
 * (`*.key` private, `*.pub` / `*.crt` public), logs (`*.log`), plugins' own
 * files (`plugins/<name>/`), and anything
 * else, which is treated as a blob that must look encrypted (attachments).
 */
export function listDataFiles(dataDir: string, sqlitePath: string | null): DataFile[] {
  const files: DataFile[] = [];
  const walk = (dir: string): void => {
    let entries: string[];
    try {
      entries = readdirSync(dir).sort();
    } catch {
      return;
    }
    for (const name of entries) {
      const path = join(dir, name);
      const stat = statSync(path, { throwIfNoEntry: false });
      if (!stat) continue;
      if (stat.isDirectory()) walk(path);
      else if (stat.isFile()) files.push(classify(relative(dataDir, path), resolve(path), stat.size, sqlitePath));
    }
  };
  walk(dataDir);
  return files;
}

function classify(rel: string, absolute: string, bytes: number, sqlitePath: string | null): DataFile {
  const name = basename(rel);
  const suffix =
    sqlitePath && absolute.startsWith(resolve(sqlitePath)) ? absolute.slice(resolve(sqlitePath).length) : null;
  if (suffix !== null && suffix in databaseFileNotes)
    return { path: rel, kind: "database", bytes, reveals: databaseFileNotes[suffix]! };
  if (suffix?.startsWith(".before-restore-")) {
    return {
      path: rel,
      kind: "database",
      bytes,
      reveals:
        "the database as it was before `zimchat admin restore` replaced it (the same tables, older rows included); delete it once the restore is confirmed",
    };
  }
  // Key files are written through a temporary `<name>.<hex>.tmp` first.
  const keyName = name.replace(/\.[0-9a-f]+\.tmp$/, "");
  if (keyName.endsWith(".key")) {
    const federation = rel.split(sep).includes("federation");
    return {
      path: rel,
      kind: "private-key",
      bytes,
      reveals: federation
        ? keyName === "identity.key"
          ? federationIdentityNote
          : federationKeyNote
        : (privateKeyNotes[keyName] ?? "a PRIVATE key file: whoever holds it can sign whatever this key signs"),
    };
  }
  if (publicFileNotes[keyName] || /\.(pub|crt)$/.test(keyName)) {
    return {
      path: rel,
      kind: "public-key",
      bytes,
      reveals: publicFileNotes[keyName] ?? "a public key or certificate (public by design)",
    };
  }
  if (name.endsWith(".log") || rel.split(sep).includes("logs")) {
    return { path: rel, kind: "log", bytes, reveals: "a log file (checked below for IP addresses)" };
  }
  if (rel.split(sep)[0] === "plugins") {
    return {
      path: rel,
      kind: "plugin-file",
      bytes,
      reveals:
        "a file a server plugin keeps in its own directory (plugins/<name>/): its content is up to the plugin, which sees metadata only (never plaintext, ciphertext, passwords or addresses)",
    };
  }
  return {
    path: rel,
    kind: "blob",
    bytes,
    reveals: "an opaque blob (attachments: padded ciphertext; checked below to look encrypted)",
  };
}

/**
 * Byte statistics of a blob, accumulated chunk by chunk: enough to tell
 * ciphertext (uniform bytes, no text) from plaintext.
 */
export class BlobStats {
  private readonly histogram = new Float64Array(256);
  private length = 0;
  private run = 0;
  private longestRun = 0;
  private head = Buffer.alloc(0);

  add(chunk: Uint8Array): void {
    if (this.head.length < 16) this.head = Buffer.concat([this.head, chunk.subarray(0, 16 - this.head.length)]);
    for (const byte of chunk) {
      this.histogram[byte]! += 1;
      // Printable ASCII, tab, CR and LF: what text is made of.
      if ((byte >= 0x20 && byte < 0x7f) || byte === 0x09 || byte === 0x0a || byte === 0x0d) {
        if (++this.run > this.longestRun) this.longestRun = this.run;
      } else this.run = 0;
    }
    this.length += chunk.length;
  }

  /**
   * Why the bytes do not look like ciphertext, or null when they do.
   * Ciphertext is indistinguishable from random bytes, and random bytes
   * (a) have Shannon entropy near min(8, log2 n) bits per byte: over 20,000
   * random samples of 64..65,536 bytes the lowest was 0.87 of it, so below
   * 0.8 is not random; (b) almost never hold 32 text characters in a row
   * (probability about 0.37^32, 1e-14, per position); (c) do not start with
   * the signature of a common file format. This catches text and unencrypted
   * files; it cannot prove that high-entropy bytes are encrypted.
   */
  verdict(): string | null {
    const n = this.length;
    if (n === 0) return null; // an empty file reveals nothing
    for (const [format, test] of fileSignatures) if (test(this.head)) return `starts like a ${format} file`;
    if (this.longestRun >= Math.min(32, n)) return `${this.longestRun} text characters in a row`;
    if (n >= 64) {
      let entropy = 0;
      for (const count of this.histogram) if (count) entropy -= (count / n) * Math.log2(count / n);
      const ceiling = Math.min(8, Math.log2(n));
      if (entropy < 0.8 * ceiling) return `entropy ${entropy.toFixed(2)} bits/byte, below 0.8 of ${ceiling.toFixed(2)}`;
    }
    return null;
  }
}

/** Why in-memory bytes do not look like ciphertext, or null when they do (see {@link BlobStats.verdict}). */
export function notCiphertextReason(bytes: Uint8Array): string | null {
  const stats = new BlobStats();
  stats.add(bytes);
  return stats.verdict();
}

/** Why a file does not look like ciphertext, or null when it does; read as a stream. */
export async function fileNotCiphertextReason(path: string): Promise<string | null> {
  const stats = new BlobStats();
  for await (const chunk of createReadStream(path)) stats.add(chunk as Buffer);
  return stats.verdict();
}

const startsWith =
  (prefix: number[] | string, offset = 0) =>
  (head: Buffer): boolean => {
    const bytes = typeof prefix === "string" ? Buffer.from(prefix, "latin1") : Buffer.from(prefix);
    return head.length >= offset + bytes.length && head.subarray(offset, offset + bytes.length).equals(bytes);
  };

// Four bytes or more each, so a random blob matches one by chance with odds below 1 in 10^8.
const fileSignatures: [string, (head: Buffer) => boolean][] = [
  ["PNG", startsWith([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a])],
  [
    "JPEG",
    (h) =>
      h.length >= 4 &&
      h[0] === 0xff &&
      h[1] === 0xd8 &&
      h[2] === 0xff &&
      (h[3] === 0xdb || (h[3]! >= 0xe0 && h[3]! <= 0xef)),
  ],
  ["GIF", (h) => startsWith("GIF87a")(h) || startsWith("GIF89a")(h)],
  ["PDF", startsWith("%PDF-")],
  ["ZIP", startsWith([0x50, 0x4b, 0x03, 0x04])],
  ["gzip", (h) => h.length >= 4 && h[0] === 0x1f && h[1] === 0x8b && h[2] === 0x08 && h[3]! < 0x20],
  ["RIFF (WAV, AVI, WebP)", startsWith("RIFF")],
  ["Ogg", startsWith("OggS")],
  ["MP3 (ID3)", (h) => startsWith("ID3")(h) && h[3]! >= 2 && h[3]! <= 4],
  ["FLAC", startsWith("fLaC")],
  ["MP4/MOV", startsWith("ftyp", 4)],
  ["Matroska/WebM", startsWith([0x1a, 0x45, 0xdf, 0xa3])],
  ["SQLite", startsWith("SQLite format 3\0")],
];
