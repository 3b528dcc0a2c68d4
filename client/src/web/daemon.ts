import { createReadStream, createWriteStream } from "node:fs";
import { rm } from "node:fs/promises";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { Transform, type Duplex } from "node:stream";
import { pipeline } from "node:stream/promises";
import { WebSocketServer, type WebSocket } from "ws";
import { z } from "zod";
import type { ZimClientOptions } from "../index.js";
import { maxWebJsonBytes, maxWebUploadBytes, webMessageLimits, type WebEvent } from "./api.js";
import {
  checkListenHost,
  forbiddenBody,
  hostAllowed,
  newSecret,
  originAllowed,
  sameSecret,
  sessionCookie,
  setSecurityHeaders,
  WebSessions,
  type ForbiddenReason,
} from "./security.js";
import { defaultWebAssetsDir, staticFile } from "./static.js";
import { WebApiError, WebDevice, toWebApiError } from "./web-device.js";
import { changeMembers, getGroup, leaveGroup } from "./web-groups.js";
import { approveLink } from "./web-link.js";

/** {@link startWebDaemon}'s options. */
export interface WebDaemonOptions {
  /** The profile directory holding (or to hold, after `POST /api/register`) the device. */
  profile: string;
  /** The address to listen on: 127.0.0.1 (or `localhost`) only; anything else throws. @default "127.0.0.1" */
  host?: string;
  /** The port; 0 picks a free one. @default 0 */
  port?: number;
  /** The built UI (index.html, app.js, app.css). @default this package's `dist/web/` */
  assetsDir?: string;
  /** The launch token. @default 32 random bytes, base64url (set it only in tests) */
  token?: string;
  /** Where warnings go. @default process.stderr */
  log?: NodeJS.WritableStream;
  /** How long a send keeps trying before the message is queued. @default { maxMs: 4000, attemptTimeoutMs: 10000 } */
  sendRetry?: ZimClientOptions["sendRetry"];
  /** Waits between retries (queued messages, connecting). @default { first: 1000, max: 15000 } */
  retryMs?: { first: number; max: number };
  /** Allow registering on a plain http:// homeserver that is not on this machine. @default false */
  allowInsecureHttp?: boolean;
}

/** A running daemon. */
export interface WebDaemon {
  /** `http://127.0.0.1:<port>/#token=<token>`: open it in a browser on this machine. */
  url: string;
  port: number;
  token: string;
  /** Stops serving, closes every WebSocket, and closes the device (queued messages stay in the profile). */
  close(): Promise<void>;
}

const sessionRequest = z.object({ token: z.string().max(256) }).strict();
const registerRequest = z
  .object({
    server: z.string().min(1).max(2048),
    username: z.string().min(1).max(64),
    invite: z.string().max(1024).optional(),
  })
  .strict();
const sendRequest = z.object({ to: z.string().min(1).max(512), text: z.string().min(1).max(60_000) }).strict();
const groupRequest = z
  .object({ title: z.string().min(1).max(128), members: z.array(z.string().min(1).max(512)).max(256) })
  .strict();
const groupMembersRequest = z
  .object({
    add: z.array(z.string().min(1).max(512)).max(256).optional(),
    remove: z.array(z.string().min(1).max(512)).max(256).optional(),
  })
  .strict();
const linkRequest = z.object({ server: z.string().min(1).max(2048) }).strict();
const approveLinkRequest = z.object({ uri: z.string().min(1).max(1024) }).strict();
const verifyRequest = z
  .object({ number: z.string().max(1024).optional() })
  .strict()
  .optional();

/** Largest message a page may send over `/api/events` (it sends nothing; more closes the socket). */
const maxPageFrameBytes = 1024;

class PayloadTooLargeError extends Error {
  override name = "PayloadTooLargeError";

  constructor(readonly limit = maxWebJsonBytes) {
    super(`a request body is at most ${limit} bytes`);
  }
}

/**
 * Streams a request body of at most {@link maxWebUploadBytes} to `path`
 * (owner-only), never holding it whole in memory.
 * @throws PayloadTooLargeError beyond the limit (declared or counted); the partial file is removed
 */
async function receiveFile(request: IncomingMessage, path: string): Promise<number> {
  const declared = Number(request.headers["content-length"] ?? 0);
  if (declared > maxWebUploadBytes) throw new PayloadTooLargeError(maxWebUploadBytes);
  let size = 0;
  const counter = new Transform({
    transform(chunk: Buffer, _encoding, done) {
      size += chunk.length;
      if (size > maxWebUploadBytes) done(new PayloadTooLargeError(maxWebUploadBytes));
      else done(null, chunk);
    },
  });
  try {
    await pipeline(request, counter, createWriteStream(path, { mode: 0o600, flags: "wx" }));
  } catch (error) {
    await rm(path, { force: true });
    throw error;
  }
  return size;
}

/** A file name as `Content-Disposition` carries it: an ASCII fallback and the UTF-8 original (RFC 6266). */
function contentDisposition(name: string): string {
  const ascii = name.replace(/[^\x20-\x7e]|["\\]/g, "_");
  return `attachment; filename="${ascii}"; filename*=UTF-8''${encodeURIComponent(name)}`;
}

/** Reads a JSON body of at most {@link maxWebJsonBytes}. */
async function readJson(request: IncomingMessage): Promise<unknown> {
  const declared = Number(request.headers["content-length"] ?? 0);
  if (declared > maxWebJsonBytes) throw new PayloadTooLargeError();
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of request as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > maxWebJsonBytes) throw new PayloadTooLargeError();
    chunks.push(chunk);
  }
  if (!size) return undefined;
  try {
    return JSON.parse(Buffer.concat(chunks).toString("utf8")) as unknown;
  } catch {
    throw new WebApiError(400, "invalid_json", "the body is not JSON");
  }
}

function parse<T>(schema: z.ZodType<T>, body: unknown): T {
  const result = schema.safeParse(body);
  if (!result.success)
    throw new WebApiError(
      400,
      "invalid_body",
      result.error.issues.map((i) => `${i.path.join(".") || "body"}: ${i.message}`).join("; "),
    );
  return result.data;
}

function sendJson(response: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  response.writeHead(status, {
    "Content-Type": "application/json; charset=utf-8",
    "Content-Length": Buffer.byteLength(text),
  });
  response.end(text);
}

function forbid(response: ServerResponse, reason: ForbiddenReason): void {
  sendJson(response, 403, forbiddenBody(reason));
}

const stateChanging = new Set(["POST", "PUT", "DELETE", "PATCH"]);

/**
 * Starts the local web client: a daemon holding the profile's device (keys
 * and libsignal stay in this process) that serves the browser UI and its
 * JSON + WebSocket API on 127.0.0.1 only. The page exchanges the launch
 * token (from the URL fragment) for an HttpOnly SameSite=Strict cookie;
 * `Host` is checked on every request, `Origin` on every state change and on
 * the WebSocket upgrade; every refusal is a 403 `{ error: "forbidden", reason }`.
 * @throws Error when `host` is not 127.0.0.1 / localhost
 * @example
 * const daemon = await startWebDaemon({ profile: "/home/tendai/.local/share/zimchat/profiles/default" });
 * console.log(`open ${daemon.url}`);
 * process.once("SIGINT", () => void daemon.close());
 */
export async function startWebDaemon(options: WebDaemonOptions): Promise<WebDaemon> {
  const host = checkListenHost(options.host ?? "127.0.0.1");
  const token = options.token ?? newSecret();
  const assetsDir = options.assetsDir ?? defaultWebAssetsDir;
  const sessions = new WebSessions();
  const device = new WebDevice({
    profile: options.profile,
    ...(options.log ? { log: options.log } : {}),
    ...(options.sendRetry ? { sendRetry: options.sendRetry } : {}),
    ...(options.retryMs ? { retryMs: options.retryMs } : {}),
    ...(options.allowInsecureHttp ? { allowInsecureHttp: true } : {}),
  });
  device.start();
  let port = 0;

  const sockets = new WebSocketServer({ noServer: true, maxPayload: maxPageFrameBytes, perMessageDeflate: false });
  const broadcast = (event: WebEvent): void => {
    const text = JSON.stringify(event);
    for (const socket of sockets.clients) if (socket.readyState === socket.OPEN) socket.send(text);
  };
  device.on("event", broadcast);

  const api = async (request: IncomingMessage, response: ServerResponse, path: string, url: URL): Promise<void> => {
    const method = request.method ?? "GET";
    if (path === "/api/session") {
      if (method !== "POST") return sendJson(response, 405, { error: "method_not_allowed" });
      const body = parse(sessionRequest, await readJson(request));
      if (!sameSecret(body.token, token)) return forbid(response, "token");
      response.setHeader("Set-Cookie", sessionCookie(sessions.create()));
      response.writeHead(204).end();
      return;
    }
    if (!sessions.valid(request)) return forbid(response, "cookie");
    const route = `${method} ${path}`;
    if (route === "GET /api/me") return sendJson(response, 200, device.me());
    if (route === "POST /api/register") {
      const body = parse(registerRequest, await readJson(request));
      const me = await device.register(body);
      broadcast({ type: "conversations" });
      return sendJson(response, 200, me);
    }
    if (route === "GET /api/conversations") return sendJson(response, 200, device.conversations());
    if (route === "POST /api/send") {
      const body = parse(sendRequest, await readJson(request));
      return sendJson(response, 200, await device.send(body.to, body.text));
    }
    if (route === "POST /api/groups") {
      const body = parse(groupRequest, await readJson(request));
      return sendJson(response, 200, await device.createGroup(body.title, body.members));
    }
    const group = /^\/api\/groups\/([^/]+)(?:\/(members|leave))?$/.exec(path);
    if (group) {
      const id = decodeURIComponent(group[1]!);
      if (method === "GET" && !group[2]) return sendJson(response, 200, getGroup(device.active, id));
      if (method === "POST" && group[2] === "members") {
        const body = parse(groupMembersRequest, await readJson(request));
        const changed = await changeMembers(device.active, id, body);
        broadcast({ type: "group", conversation: changed.id });
        broadcast({ type: "conversations" });
        return sendJson(response, 200, changed);
      }
      if (method === "POST" && group[2] === "leave") {
        const left = await leaveGroup(device.active, id);
        broadcast({ type: "group", conversation: left.id });
        broadcast({ type: "conversations" });
        return sendJson(response, 200, left);
      }
    }
    if (route === "POST /api/link") {
      const body = parse(linkRequest, await readJson(request));
      return sendJson(response, 200, await device.link(body.server));
    }
    if (route === "POST /api/link/approve") {
      const body = parse(approveLinkRequest, await readJson(request));
      await approveLink(device.active, body.uri);
      response.writeHead(204).end();
      return;
    }
    if (route === "POST /api/files") {
      const to = url.searchParams.get("to") ?? "";
      const name = (url.searchParams.get("name") ?? "").slice(0, 255);
      if (!to)
        throw new WebApiError(400, "invalid_argument", "to= names the conversation or username the file goes to");
      if (Number(request.headers["content-length"] ?? 0) > maxWebUploadBytes)
        throw new PayloadTooLargeError(maxWebUploadBytes);
      const target = await device.fileTarget(to);
      const temporary = device.transferPath();
      try {
        const size = await receiveFile(request, temporary);
        if (!size) throw new WebApiError(400, "invalid_argument", "the file is empty");
        return sendJson(response, 200, await device.sendFile(target, temporary, name || "file"));
      } finally {
        await rm(temporary, { force: true });
      }
    }
    const file = /^\/api\/files\/([^/]+)\/([^/]+)$/.exec(path);
    if (file && method === "GET") {
      const temporary = device.transferPath();
      try {
        const attachment = await device.downloadFile(
          decodeURIComponent(file[1]!),
          decodeURIComponent(file[2]!),
          temporary,
        );
        response.writeHead(200, {
          "Content-Type": "application/octet-stream",
          "Content-Disposition": contentDisposition(attachment.name),
          "Content-Length": attachment.size,
        });
        await pipeline(createReadStream(temporary), response);
      } finally {
        await rm(temporary, { force: true });
      }
      return;
    }
    const accept = /^\/api\/identity\/([^/]+)\/accept$/.exec(path);
    if (accept && method === "POST")
      return sendJson(response, 200, await device.acceptIdentity(decodeURIComponent(accept[1]!)));
    const conversation = /^\/api\/conversations\/([^/]+)\/(messages|read)$/.exec(path);
    if (conversation) {
      const id = decodeURIComponent(conversation[1]!);
      if (method === "GET" && conversation[2] === "messages") {
        const raw = url.searchParams.get("limit");
        const limit = raw === null ? webMessageLimits.default : Number(raw);
        if (!Number.isInteger(limit) || limit < 1 || limit > webMessageLimits.max)
          throw new WebApiError(
            400,
            "invalid_argument",
            `limit must be a whole number from 1 to ${webMessageLimits.max}`,
          );
        return sendJson(response, 200, device.messages(id, limit));
      }
      if (method === "POST" && conversation[2] === "read") {
        device.markRead(id);
        response.writeHead(204).end();
        return;
      }
    }
    const safety = /^\/api\/safety\/([^/]+)(\/verify)?$/.exec(path);
    if (safety) {
      const user = decodeURIComponent(safety[1]!);
      if (method === "GET" && !safety[2]) return sendJson(response, 200, await device.safetyNumber(user));
      if (method === "POST" && safety[2]) {
        const body = parse(verifyRequest, await readJson(request));
        return sendJson(response, 200, await device.verify(user, body?.number));
      }
    }
    sendJson(response, 404, { error: "not_found", message: `no ${method} ${path}` });
  };

  const handle = async (request: IncomingMessage, response: ServerResponse): Promise<void> => {
    setSecurityHeaders(response);
    if (!hostAllowed(request, port)) return forbid(response, "host");
    const method = request.method ?? "GET";
    // A foreign Origin is refused on any request; a state change must name this daemon's.
    if ((request.headers.origin !== undefined || stateChanging.has(method)) && !originAllowed(request, port))
      return forbid(response, "origin");
    const url = new URL(request.url ?? "/", `http://127.0.0.1:${port}`);
    const path = url.pathname;
    if (path === "/api" || path.startsWith("/api/")) {
      response.setHeader("Cache-Control", "no-store");
      try {
        await api(request, response, path, url);
      } catch (error) {
        if (response.headersSent) {
          // A download that failed half-way: the page sees a cut-off body, not a complete file.
          response.destroy();
          return;
        }
        // A refused upload's bytes are read and dropped, so that the page gets the answer rather than a reset.
        if (!(error instanceof PayloadTooLargeError) && !request.readableEnded) request.resume();
        if (error instanceof PayloadTooLargeError) {
          response.setHeader("Connection", "close");
          return sendJson(response, 413, { error: "body_too_large", message: error.message });
        }
        const failure = toWebApiError(error);
        if (failure.status >= 500 && failure.code === "internal")
          options.log?.write(`zimchat-chat web: ${failure.message}\n`);
        sendJson(response, failure.status, { error: failure.code, message: failure.message });
      }
      return;
    }
    if (method !== "GET" && method !== "HEAD") return sendJson(response, 405, { error: "method_not_allowed" });
    const file = await staticFile(assetsDir, path);
    if (!file) return sendJson(response, 404, { error: "not_found" });
    response.writeHead(200, {
      "Content-Type": file.contentType,
      "Content-Length": file.body.length,
      "Cache-Control": "no-cache",
    });
    response.end(method === "HEAD" ? undefined : file.body);
  };

  const refuseUpgrade = (socket: Duplex, reason: ForbiddenReason | "not_found"): void => {
    const body = JSON.stringify(reason === "not_found" ? { error: "not_found" } : forbiddenBody(reason));
    const status = reason === "not_found" ? "404 Not Found" : "403 Forbidden";
    socket.end(
      `HTTP/1.1 ${status}\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
    );
  };

  const server: Server = createServer((request, response) => {
    handle(request, response).catch((error: unknown) => {
      options.log?.write(`zimchat-chat web: ${error instanceof Error ? error.message : String(error)}\n`);
      if (!response.headersSent) sendJson(response, 500, { error: "internal" });
      else response.destroy();
    });
  });
  server.on("upgrade", (request: IncomingMessage, socket: Duplex, head: Buffer) => {
    socket.on("error", () => socket.destroy());
    if (!hostAllowed(request, port)) return refuseUpgrade(socket, "host");
    if (!originAllowed(request, port)) return refuseUpgrade(socket, "origin");
    const path = new URL(request.url ?? "/", `http://127.0.0.1:${port}`).pathname;
    if (path !== "/api/events") return refuseUpgrade(socket, "not_found");
    if (!sessions.valid(request)) return refuseUpgrade(socket, "cookie");
    sockets.handleUpgrade(request, socket, head, (ws: WebSocket) => {
      // The page sends nothing: what it sends is ignored, and more than maxPageFrameBytes closes the socket (ws: 1009).
      ws.on("message", () => undefined);
      ws.on("error", () => ws.terminate());
      ws.send(JSON.stringify({ type: "connection", online: device.isOnline } satisfies WebEvent));
    });
  });

  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(options.port ?? 0, host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  port = (server.address() as { port: number }).port;

  let closing: Promise<void> | null = null;
  return {
    url: `http://${host}:${port}/#token=${token}`,
    port,
    token,
    close() {
      closing ??= (async () => {
        for (const socket of sockets.clients) socket.terminate();
        sockets.close();
        server.closeAllConnections();
        await new Promise<void>((resolve) => server.close(() => resolve()));
        await device.close();
      })();
      return closing;
    },
  };
}
