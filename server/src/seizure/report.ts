import { readFileSync } from "node:fs";
import { join } from "node:path";
import { envelopeTypeName, envelopeTypes, type EnvelopeType } from "@zimchat/protocol";
import type { DatabaseTarget } from "../db/database-url.js";
import type { Bytes } from "../db/database.js";
import { checkCiphertext } from "../services/signal-keys.js";
import { dayNumber } from "../util/day.js";
import {
  containsIpAddress,
  fileNotCiphertextReason,
  listDataFiles,
  notCiphertextReason,
  type DataFile,
} from "./data-files.js";
import { openReader, type DatabaseReader, type TableShape } from "./database-reader.js";
import { hashColumns, publicKeyColumns, sequenceNotes, signatureColumns, tableNotes } from "./schema-notes.js";

/** How a check came out: `warn` is held metadata worth knowing that is not a broken promise. */
export type CheckStatus = "pass" | "fail" | "warn";

/** One claim about what the server does NOT hold, checked against the data. */
export interface Check {
  id: string;
  title: string;
  status: CheckStatus;
  /** Counts and reasons; never key bytes, ciphertext, addresses or tokens. */
  detail: string;
}

/** One table as found in the database, with what each column reveals. */
export interface TableReport {
  name: string;
  row: string;
  rows: number;
  columns: { name: string; type: string; reveals: string }[];
}

/** Everything `zimchat seizure-report` prints. */
export interface SeizureReport {
  database: { provider: DatabaseTarget["provider"]; location: string };
  dataDir: string;
  tables: TableReport[];
  /** PostgreSQL sequences (the Envelope counter); on SQLite, see the sqlite_sequence table. */
  sequences: { name: string; value: number; reveals: string }[];
  envelopes: { total: number; sealed: number; notSealed: number; everQueued: number };
  files: DataFile[];
  /** What IS held, in plain sentences with counts. */
  held: string[];
  checks: Check[];
  /** No check failed. */
  ok: boolean;
}

/** Thrown when the database has a table or column the report does not describe, or lacks one it does. */
export class SchemaDriftError extends Error {
  override name = "SchemaDriftError";
  constructor(
    readonly undescribed: string[],
    readonly missing: string[],
  ) {
    super(
      [
        undescribed.length
          ? `the database has ${undescribed.join(", ")}, which the seizure report does not describe`
          : "",
        missing.length
          ? `the seizure report describes ${missing.join(", ")}, which the database lacks (is it migrated to this version?)`
          : "",
      ]
        .filter(Boolean)
        .join("; ") + ". Describe every table and column in server/src/seizure/schema-notes.ts.",
    );
  }
}

/**
 * Reads a ZimChat database and data directory the way someone who seized
 * them would, read-only, and reports what they reveal and what they do not.
 * @throws SchemaDriftError when the schema and the descriptions disagree
 */
export async function buildSeizureReport(options: { dataDir: string; target: DatabaseTarget }): Promise<SeizureReport> {
  const reader = await openReader(options.target);
  try {
    return await inspect(reader, options.dataDir, options.target.provider === "sqlite" ? options.target.path : null);
  } finally {
    await reader.close();
  }
}

const q = (name: string): string => `"${name.replace(/"/g, '""')}"`;

async function count(reader: DatabaseReader, sql: string, params: unknown[] = []): Promise<number> {
  const [row] = await reader.all<{ n: number | string | bigint }>(sql, params);
  return Number(row?.n ?? 0);
}

async function inspect(reader: DatabaseReader, dataDir: string, sqlitePath: string | null): Promise<SeizureReport> {
  const shapes = await reader.tables();
  const sequenceRows = await reader.sequences();
  checkDescribed(
    reader.provider,
    shapes,
    sequenceRows.map((s) => s.name),
  );

  const tables: TableReport[] = [];
  const order = Object.keys(tableNotes);
  for (const shape of [...shapes].sort((a, b) => order.indexOf(a.name) - order.indexOf(b.name))) {
    const note = tableNotes[shape.name]!;
    tables.push({
      name: shape.name,
      row: note.row,
      rows: await count(reader, `SELECT count(*) AS n FROM ${q(shape.name)}`),
      columns: shape.columns.map((c) => ({ name: c.name, type: c.type, reveals: note.columns[c.name]! })),
    });
  }
  const rowsOf = (name: string): number => tables.find((t) => t.name === name)?.rows ?? 0;
  const sequences = sequenceRows.map((s) => ({ ...s, reveals: sequenceNotes[s.name]! }));
  const sealedType = envelopeTypes.sealed;
  const sealed = await count(reader, `SELECT count(*) AS n FROM "Envelope" WHERE "type" = ?`, [sealedType]);
  const everQueued =
    reader.provider === "sqlite"
      ? await count(reader, `SELECT coalesce(max("seq"), 0) AS n FROM sqlite_sequence WHERE "name" = 'Envelope'`)
      : (sequences.find((s) => s.name === "Envelope_seq_seq")?.value ?? 0);
  const envelopes = { total: rowsOf("Envelope"), sealed, notSealed: rowsOf("Envelope") - sealed, everQueued };
  const files = listDataFiles(dataDir, sqlitePath);

  const checks = [
    await envelopeCiphertextCheck(reader),
    await outboxCiphertextCheck(reader),
    await publicKeysCheck(reader, shapes),
    await sealedWithoutSenderCheck(reader, envelopes),
    await noIpAddressCheck(reader, shapes, dataDir, files),
    await lastSeenDayCheck(reader, shapes),
    await creationDayCheck(reader),
    await opaqueBlobsCheck(reader, dataDir, files),
  ];

  // Whether stored timestamps are coarsened to the minute (every one a multiple of 60 s) or kept to the millisecond.
  const finer = await count(
    reader,
    `SELECT count(*) AS n FROM "Envelope" WHERE "serverTimestamp" % 60000 <> 0 OR "expiresAt" % 60000 <> 0`,
  );
  const granularity =
    envelopes.total && !finer ? "to the minute" : envelopes.total ? "to the millisecond" : "(none queued)";
  const freePages =
    reader.provider === "sqlite" ? await count(reader, `SELECT freelist_count AS n FROM pragma_freelist_count`) : 0;
  const privateKeys = files.filter((f) => f.kind === "private-key");
  const held = [
    `${rowsOf("Account")} accounts: UUID, username, identity PUBLIC key, creation day, hash of the unidentified-access key`,
    `${rowsOf("Device")} devices: account, device number, registration id, password hash, creation day, last connection day`,
    `${envelopes.total} queued envelopes: ${envelopes.notSealed} not sealed (sender and recipient visible: who writes to whom, while queued), ` +
      `${envelopes.sealed} sealed (recipient only); server timestamps and expiry ${granularity}; ${envelopes.everQueued} envelopes queued over the server's life`,
    `timing: the envelopes of one send (one multi-recipient upload, or one message to several devices) are committed together, so they have ` +
      `consecutive queue numbers (seq) and the same server timestamp (${granularity}); while they are queued, that still shows which ` +
      "recipients one upload reached, sealed or not (ordering comes from seq, not from the timestamp)",
    `${rowsOf("Attachment")} attachments: uploader account, padded size, upload time`,
    `${rowsOf("LinkCode")} pending device links, ${rowsOf("Invite")} invites (hashes of their secrets only)`,
    `${rowsOf("EcPreKey") + rowsOf("KyberPreKey")} unused one-time PUBLIC pre-keys`,
    `${rowsOf("PluginEntry")} entries in server plugins' storage and ${files.filter((f) => f.kind === "plugin-file").length} files in their directories (plugins/<name>/): ` +
      "what the configured plugins keep, from metadata only (ids, usernames, public identity keys, counts, times)",
    `federation: ${rowsOf("FederationOutbox")} sends to accounts on other servers waiting in the outbox or kept as failure notices ` +
      `(sending account, destination server and account, ciphertext), ${rowsOf("FederationPeer")} other servers with their delivery backoff; ` +
      "queued envelopes from other servers name the server that relayed them (sourceServer), and the sender account on that server unless sealed. " +
      "A server learns of a remote user only what its own users' traffic shows: the account id, its server, and (for its pre-key bundle) nothing it stores",
    privateKeys.length
      ? `${privateKeys.length} private key files of the server itself (${privateKeys.map((f) => f.path).join(", ")}): they sign certificates, they decrypt nothing`
      : "no private key files of the server in the data directory",
  ];
  if (reader.provider === "sqlite") {
    held.push(
      `${freePages} free database pages (zeroed when the server ran with secure_delete, as it does); the write-ahead log ` +
        `(${files.find((f) => f.path.endsWith("-wal"))?.bytes ?? 0} bytes) holds the writes since the last checkpoint, including rows deleted since then as they were ` +
        "inserted (acknowledged envelopes, with the sender of non-sealed ones); the server checkpoints and truncates it every --sqlite-checkpoint-ms (2 s by default); " +
        "the checks below read live rows only",
    );
  } else {
    held.push(
      "PostgreSQL keeps deleted rows (acknowledged envelopes, with the sender of non-sealed ones) as dead tuples until vacuumed, and in its WAL and any backups; the checks below read live rows only",
    );
  }
  return {
    database: { provider: reader.provider, location: reader.location },
    dataDir,
    tables,
    sequences,
    envelopes,
    files,
    held,
    checks,
    ok: checks.every((c) => c.status !== "fail"),
  };
}

/** Every table, column and sequence in the database is described, and every description matches one. */
function checkDescribed(provider: DatabaseTarget["provider"], shapes: TableShape[], sequenceNames: string[]): void {
  const undescribed: string[] = [];
  const missing: string[] = [];
  for (const shape of shapes) {
    const note = tableNotes[shape.name];
    if (!note) {
      undescribed.push(`table ${shape.name}`);
      continue;
    }
    for (const column of shape.columns)
      if (!note.columns[column.name]) undescribed.push(`column ${shape.name}.${column.name}`);
    for (const column of Object.keys(note.columns))
      if (!shape.columns.some((c) => c.name === column)) missing.push(`column ${shape.name}.${column}`);
  }
  for (const [name, note] of Object.entries(tableNotes)) {
    if ((!note.provider || note.provider === provider) && !shapes.some((s) => s.name === name))
      missing.push(`table ${name}`);
  }
  if (provider === "postgresql") {
    for (const name of sequenceNames) if (!sequenceNotes[name]) undescribed.push(`sequence ${name}`);
    for (const name of Object.keys(sequenceNotes)) if (!sequenceNames.includes(name)) missing.push(`sequence ${name}`);
  }
  if (undescribed.length || missing.length) throw new SchemaDriftError(undescribed, missing);
}

const pageSize = 500;

/** Every envelope's content parses as the libsignal message its type names; sealed ones also look like ciphertext. */
async function envelopeCiphertextCheck(reader: DatabaseReader): Promise<Check> {
  const byType = new Map<string, number>();
  const bad: string[] = [];
  let total = 0;
  for (let after = -1; ;) {
    // A multi-recipient envelope holds its recipient's header; the message is that header followed by the shared part.
    const rows = await reader.all<{ seq: number; type: number; content: Uint8Array; shared: Uint8Array | null }>(
      `SELECT e."seq", e."type", e."content", p."content" AS "shared" FROM "Envelope" e
       LEFT JOIN "SharedPayload" p ON p."id" = e."sharedPayloadId" WHERE e."seq" > ? ORDER BY e."seq" LIMIT ${pageSize}`,
      [after],
    );
    for (const row of rows) {
      total++;
      const type = envelopeTypeName(Number(row.type));
      const content = new Uint8Array(row.shared ? Buffer.concat([row.content, row.shared]) : row.content) as Bytes;
      byType.set(type ?? `unknown type ${row.type}`, (byType.get(type ?? `unknown type ${row.type}`) ?? 0) + 1);
      let problem: string | null = null;
      if (!type) problem = `unknown type ${row.type}`;
      else {
        try {
          checkCiphertext(type, content);
          // A sealed-sender frame is checked by its version byte only, so its bytes must also look encrypted.
          if (type === "sealed") problem = notCiphertextReason(content);
        } catch {
          problem = `not a libsignal ${type} message`;
        }
      }
      if (problem) bad.push(`seq ${row.seq}: ${problem}`);
    }
    if (rows.length < pageSize) break;
    after = Number(rows[rows.length - 1]!.seq);
  }
  const kinds = [...byType].map(([k, n]) => `${k} ${n}`).join(", ") || "none queued";
  return {
    id: "envelope-ciphertext",
    title: "no plaintext in envelopes",
    status: bad.length ? "fail" : "pass",
    detail: bad.length
      ? `${bad.length} of ${total} envelope contents are not the libsignal message their type names (${listSome(bad)})`
      : `all ${total} envelope contents parse as the libsignal message their type names (${kinds}); sealed ones, whose frame is checked by version byte only, also look like ciphertext`,
  };
}

/** The federation outbox holds only the libsignal messages of each send, like the envelopes. */
async function outboxCiphertextCheck(reader: DatabaseReader): Promise<Check> {
  const bad: string[] = [];
  let total = 0;
  for (let after = -1; ;) {
    const rows = await reader.all<{ seq: number; messages: string }>(
      `SELECT "seq", "messages" FROM "FederationOutbox" WHERE "seq" > ? ORDER BY "seq" LIMIT ${pageSize}`,
      [after],
    );
    for (const row of rows) {
      let messages: { type?: unknown; content?: unknown }[];
      try {
        messages = JSON.parse(row.messages) as typeof messages;
        if (!Array.isArray(messages)) throw new Error("not a list");
      } catch {
        bad.push(`seq ${row.seq}: not a list of messages`);
        continue;
      }
      for (const m of messages) {
        total++;
        const type = typeof m.type === "string" ? (m.type as EnvelopeType) : null;
        try {
          if (!type || typeof m.content !== "string") throw new Error("shape");
          const content = new Uint8Array(Buffer.from(m.content, "base64")) as Bytes;
          checkCiphertext(type, content);
          if (type === "sealed" && notCiphertextReason(content)) throw new Error("plain");
        } catch {
          bad.push(`seq ${row.seq}: not a libsignal ${String(m.type)} message`);
        }
      }
    }
    if (rows.length < pageSize) break;
    after = Number(rows[rows.length - 1]!.seq);
  }
  return {
    id: "outbox-ciphertext",
    title: "no plaintext in the federation outbox",
    status: bad.length ? "fail" : "pass",
    detail: bad.length
      ? `${bad.length} of ${total} queued messages to other servers are not the libsignal message their type names (${listSome(bad)})`
      : `all ${total} messages queued for other servers parse as the libsignal message their type names`,
  };
}

/**
 * Every key column holds serialized public keys, signatures are signatures, hashes are hashes; no column is named for a
 * secret.
 */
async function publicKeysCheck(reader: DatabaseReader, shapes: TableShape[]): Promise<Check> {
  const problems: string[] = [];
  let checked = 0;
  const expect = async (table: string, column: string, length: number, prefix: string | null): Promise<void> => {
    const rows = await reader.all<{ len: number; prefix: string | null; n: number | string }>(
      `SELECT length(${q(column)}) AS len, ${reader.dialect.firstByteHex(q(column))} AS prefix, count(*) AS n FROM ${q(table)} WHERE ${q(column)} IS NOT NULL GROUP BY 1, 2`,
    );
    for (const row of rows) {
      const n = Number(row.n);
      checked += n;
      if (Number(row.len) !== length)
        problems.push(`${table}.${column}: ${n} value(s) of ${row.len} bytes, not ${length}`);
      else if (prefix && row.prefix?.toUpperCase() !== prefix)
        problems.push(`${table}.${column}: ${n} value(s) without the 0x${prefix} public-key type byte`);
    }
  };
  for (const { table, column, kind } of publicKeyColumns)
    await (kind === "ec" ? expect(table, column, 33, "05") : expect(table, column, 1569, "08"));
  for (const { table, column } of signatureColumns) await expect(table, column, 64, null);
  for (const { table, column } of hashColumns) await expect(table, column, 32, null);
  for (const shape of shapes) {
    for (const column of shape.columns) {
      if (/private|secret|seed|plain/i.test(column.name))
        problems.push(`column ${shape.name}.${column.name} is named for a secret`);
    }
  }
  return {
    id: "public-keys-only",
    title: "no private keys among stored keys",
    status: problems.length ? "fail" : "pass",
    detail: problems.length
      ? problems.join("; ")
      : `${checked} stored keys, signatures and hashes all have the shape of what they claim to be: EC keys 33 bytes with the 0x05 public-key type byte ` +
        `(a private key would be 32), Kyber keys 1569 bytes with 0x08 (a Kyber-1024 secret key is 3168), signatures 64 bytes, hashes 32 bytes; no column is named for a secret`,
  };
}

async function sealedWithoutSenderCheck(reader: DatabaseReader, envelopes: SeizureReport["envelopes"]): Promise<Check> {
  const withSource = await count(
    reader,
    `SELECT count(*) AS n FROM "Envelope" WHERE "type" = ? AND ("sourceAccountId" IS NOT NULL OR "sourceDeviceId" IS NOT NULL)`,
    [envelopeTypes.sealed],
  );
  return {
    id: "sealed-no-sender",
    title: "no sender on sealed envelopes",
    status: withSource ? "fail" : "pass",
    detail:
      `${withSource} of ${envelopes.sealed} sealed envelopes have a sender stored; ` +
      `${envelopes.notSealed} of ${envelopes.total} queued envelopes are not sealed and carry their sender until acknowledged`,
  };
}

const ipColumnWords = new Set(["ip", "ipv4", "ipv6", "addr", "address", "remote", "host", "peer", "inet"]);

/**
 * No column is made to hold an address, no text value looks like one, and no log file in the data directory holds one.
 */
/** Columns that hold other homeservers' names (federation): a server may be named by its public address. */
const serverNameColumns = new Set(["Envelope.sourceServer", "FederationOutbox.server", "FederationPeer.server"]);

async function noIpAddressCheck(
  reader: DatabaseReader,
  shapes: TableShape[],
  dataDir: string,
  files: DataFile[],
): Promise<Check> {
  const problems: string[] = [];
  let scanned = 0;
  for (const shape of shapes) {
    for (const column of shape.columns) {
      const words = column.name.split(/_|(?=[A-Z])/).map((w) => w.toLowerCase());
      if (words.some((w) => ipColumnWords.has(w)) || /^(inet|cidr|macaddr)/.test(column.type))
        problems.push(`column ${shape.name}.${column.name} looks made for addresses`);
      if (!/text|char|clob/.test(column.type)) continue;
      // Federation: another homeserver's public name, which may be an address literal: not a client's address.
      if (serverNameColumns.has(`${shape.name}.${column.name}`)) continue;
      scanned++;
      // Any IPv4 address has three dots and any IPv6 address two colons: the database narrows, the patterns decide.
      const rows = await reader.all<{ v: string }>(
        `SELECT ${q(column.name)} AS v FROM ${q(shape.name)} WHERE ${q(column.name)} LIKE '%.%.%.%' OR ${q(column.name)} LIKE '%:%:%'`,
      );
      const hits = rows.filter((r) => containsIpAddress(String(r.v))).length;
      if (hits) problems.push(`${shape.name}.${column.name}: ${hits} value(s) contain an IP address`);
    }
  }
  const logs = files.filter((f) => f.kind === "log");
  for (const log of logs) {
    const hits = readFileSync(join(dataDir, log.path), "utf8").split("\n").filter(containsIpAddress).length;
    if (hits) problems.push(`${log.path}: ${hits} line(s) contain an IP address`);
  }
  return {
    id: "no-ip-addresses",
    title: "no IP addresses",
    status: problems.length ? "fail" : "pass",
    detail: problems.length
      ? problems.join("; ")
      : `no column is made for addresses; ${scanned} text columns scanned, no value contains an IPv4 or IPv6 address; ` +
        `${logs.length} log files in the data directory${logs.length ? ", none with an address" : " (the server logs to stdout, without addresses)"}`,
  };
}

/** Device.lastSeenDay is a whole day number, and no day lies in the future. */
async function lastSeenDayCheck(reader: DatabaseReader, shapes: TableShape[]): Promise<Check> {
  const column = shapes.find((s) => s.name === "Device")?.columns.find((c) => c.name === "lastSeenDay");
  const today = dayNumber();
  const devices = await count(reader, `SELECT count(*) AS n FROM "Device"`);
  const odd = await count(reader, `SELECT count(*) AS n FROM "Device" WHERE "lastSeenDay" < 0 OR "lastSeenDay" > ?`, [
    today + 1,
  ]);
  const never = await count(reader, `SELECT count(*) AS n FROM "Device" WHERE "lastSeenDay" = 0`);
  const recent = await count(reader, `SELECT count(*) AS n FROM "Device" WHERE "lastSeenDay" >= ?`, [today - 29]);
  const integer = !!column && /int/.test(column.type);
  return {
    id: "last-seen-day",
    title: "last seen at day granularity",
    status: integer && !odd ? "pass" : "fail",
    detail: !integer
      ? `Device.lastSeenDay is stored as ${column?.type ?? "nothing"}, not a whole day number`
      : odd
        ? `${odd} of ${devices} devices have a lastSeenDay that is not a day number up to today (${today})`
        : `all ${devices} devices keep their last connection as a whole day number (${recent} connected in the last 30 days, ${never} not since the day was recorded)`,
  };
}

/**
 * Account and device creation times are kept at midnight UTC (a warning, not a failure: rows from before day truncation
 * keep their time).
 */
async function creationDayCheck(reader: DatabaseReader): Promise<Check> {
  const exact: string[] = [];
  let total = 0;
  for (const table of ["Account", "Device"]) {
    const rows = await reader.all<{ t: unknown }>(`SELECT "createdAt" AS t FROM ${q(table)}`);
    total += rows.length;
    const n = rows.filter((r) => timeOfDayMs(r.t) !== 0).length;
    if (n) exact.push(`${n} ${table} row(s)`);
  }
  return {
    id: "creation-day",
    title: "creation times at day granularity",
    status: exact.length ? "warn" : "pass",
    detail: exact.length
      ? `${exact.join(" and ")} keep a creation time finer than the day (created before day truncation, or by a path that does not truncate)`
      : `all ${total} account and device creation times are midnight UTC (the day only)`,
  };
}

/**
 * Milliseconds past midnight UTC of a stored DateTime: Prisma writes SQLite
 * DateTimes as ISO text or epoch milliseconds, the column default writes
 * `YYYY-MM-DD HH:MM:SS` (UTC); PostgreSQL's driver hands back a Date read
 * as local time from a column without a zone.
 */
function timeOfDayMs(value: unknown): number {
  let ms: number;
  if (value instanceof Date) ms = value.getTime() - value.getTimezoneOffset() * 60_000;
  else if (typeof value === "number" || typeof value === "bigint") ms = Number(value);
  else {
    const text = String(value);
    ms = Date.parse(/[zZ]|[+-]\d\d:?\d\d$/.test(text) ? text : `${text.replace(" ", "T")}Z`);
  }
  return Number.isNaN(ms) ? -1 : ((ms % 86_400_000) + 86_400_000) % 86_400_000;
}

/**
 * Attachment blobs and any other opaque file in the data directory, and provisioning messages, look like ciphertext.
 */
async function opaqueBlobsCheck(reader: DatabaseReader, dataDir: string, files: DataFile[]): Promise<Check> {
  const problems: string[] = [];
  const blobs = files.filter((f) => f.kind === "blob");
  for (const blob of blobs) {
    const reason = await fileNotCiphertextReason(join(dataDir, blob.path));
    if (reason) problems.push(`${blob.path}: ${reason}`);
  }
  const messages = await reader.all<{ m: Uint8Array }>(
    `SELECT "provisioningMessage" AS m FROM "LinkCode" WHERE "provisioningMessage" IS NOT NULL`,
  );
  const badMessages = messages.filter((r) => notCiphertextReason(r.m)).length;
  if (badMessages)
    problems.push(`${badMessages} of ${messages.length} LinkCode provisioning messages do not look like ciphertext`);
  const attachments = await count(reader, `SELECT count(*) AS n FROM "Attachment"`);
  return {
    id: "opaque-blobs",
    title: "attachments and provisioning messages look encrypted",
    status: problems.length ? "fail" : "pass",
    detail: problems.length
      ? listSome(problems)
      : `${blobs.length} blob files in the data directory (${attachments} attachment rows) and ${messages.length} provisioning messages: ` +
        `near-uniform bytes (entropy at least 0.8 of the maximum), no run of 32 text characters, no file-format signature. ` +
        `This rules out text and unencrypted files; it cannot prove high-entropy bytes are encrypted`,
  };
}

function listSome(items: string[], max = 5): string {
  return items.length > max ? `${items.slice(0, max).join("; ")}; and ${items.length - max} more` : items.join("; ");
}
