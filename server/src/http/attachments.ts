import { Transform } from "node:stream";
import { pipeline } from "node:stream/promises";
import { Router, type Request, type RequestHandler, type Response } from "express";
import { streamRoutes, type StreamRouteSpec } from "@zimchat/protocol";
import { HttpError } from "../errors.js";
import type { Logger } from "../logger.js";
import { unauthorized, type AccountService, type DevicePrincipal } from "../services/account-service.js";
import { UploadAbortedError, type AttachmentService } from "../services/attachment-service.js";
import { parseBasicAuth } from "./basic-auth.js";
import { invalidRequest } from "./router.js";
import { discardRest } from "./unread-body.js";
import type { FederationService } from "../federation/federation-service.js";

/**
 * The raw-body routes of the protocol's `streamRoutes` table: attachment
 * upload (the request body streams to disk, never buffered) and download
 * (from the file, with HTTP Range). Mounted before the JSON body parser,
 * which would otherwise read these bodies. Errors go to the same error
 * middleware as the JSON routes.
 */
export function createAttachmentRouter(
  attachments: AttachmentService,
  accounts: AccountService,
  logger: Logger,
  federation: FederationService,
): Router {
  const router = Router();
  const {
    uploadAttachment: upload,
    downloadAttachment: download,
    federationDownloadAttachment: peerDownload,
    remoteDownloadAttachment: remoteDownload,
  } = streamRoutes;

  router[upload.method](
    upload.path,
    mount(upload, logger, async (req, res) => {
      const principal = await authenticate(accounts, req);
      const encoding = req.headers["content-encoding"];
      if (encoding !== undefined && encoding.toLowerCase() !== "identity") {
        // Stored as sent, so a compressed body would be stored compressed; ciphertext does not compress anyway.
        throw new HttpError("invalid_request", "Attachments are uploaded without a Content-Encoding");
      }
      const length = req.headers["content-length"];
      const declared = length === undefined ? undefined : Number(length);
      try {
        const stored = await attachments.upload(principal, req, declared);
        res.status(upload.success.status).json(stored);
      } catch (error) {
        // The client went away: there is no one to answer, and nothing was stored.
        if (error instanceof UploadAbortedError)
          return void logger.debug({ route: routeName(upload) }, "upload aborted");
        throw error;
      }
    }),
  );

  /** Sends a stored attachment, one HTTP Range at most (the same for a local device and a peer's user). */
  const sendBlob = async (res: Response, id: string): Promise<void> => {
    const blob = await attachments.open(id);
    res.set({
      "Content-Type": "application/octet-stream",
      "Cache-Control": "no-store",
      "X-Content-Type-Options": "nosniff",
    });
    await new Promise<void>((resolve, reject) => {
      // `send` answers Range requests (206, one range) and If-Range; the file name is the id, never a dotfile.
      res.sendFile(
        blob.path,
        { acceptRanges: true, cacheControl: false, etag: false, lastModified: false, dotfiles: "allow" },
        (error?: Error) => {
          if (!error) return resolve();
          const { status, code } = error as { status?: number; code?: string };
          // The client went away mid-transfer: nothing to answer.
          if (res.headersSent) return resolve();
          if (status === 416) {
            return reject(
              new HttpError(
                "range_not_satisfiable",
                "The requested range is outside the attachment",
                {},
                { "Content-Range": `bytes */${blob.size}` },
              ),
            );
          }
          // Swept between the lookup and the read.
          if (status === 404 || code === "ENOENT")
            return reject(new HttpError("not_found", "No such attachment (unknown or expired)"));
          // Logged as a 500: the code only, since the error's path names the id (a capability).
          reject(new Error(`reading an attachment failed (${code ?? status ?? "unknown"})`));
        },
      );
    });
  };

  router[download.method](
    download.path,
    mount(download, logger, async (req, res) => {
      await authenticate(accounts, req);
      const params = download.params.safeParse(req.params);
      if (!params.success) throw invalidRequest(params.error, "params");
      await sendBlob(res, params.data.id);
    }),
  );

  // Federation: a peer's user downloads by id (the capability), signed by the peer; 404 while federation is off.
  router[peerDownload.method](
    peerDownload.path,
    mount(peerDownload, logger, async (req, res) => {
      const origin = await federation.authenticate({
        method: req.method,
        url: req.originalUrl,
        headers: req.headers,
        body: new Uint8Array(),
      });
      const params = peerDownload.params.safeParse(req.params);
      if (!params.success) throw invalidRequest(params.error, "params");
      await federation.admitAttachmentDownload(origin);
      await sendBlob(res, params.data.id);
    }),
  );

  // A local user downloads an attachment stored on another server, streamed through.
  router[remoteDownload.method](
    remoteDownload.path,
    mount(remoteDownload, logger, async (req, res) => {
      const principal = await authenticate(accounts, req);
      const params = remoteDownload.params.safeParse(req.params);
      if (!params.success) throw invalidRequest(params.error, "params");
      const range = typeof req.headers.range === "string" ? req.headers.range : undefined;
      const answer = await federation.remoteAttachment(principal, params.data.server, params.data.id, range);
      res.status(answer.status).set({
        ...answer.headers,
        "Content-Type": "application/octet-stream",
        "Cache-Control": "no-store",
        "X-Content-Type-Options": "nosniff",
      });
      let sent = 0;
      const limit = Number(answer.headers["content-length"]);
      try {
        await pipeline(
          answer.body,
          // Never more than the other server stated (and this server's limit checked it).
          new Transform({
            transform(chunk: Buffer, _encoding, done) {
              sent += chunk.length;
              done(sent > limit ? new Error("the other server sent more than it stated") : null, chunk);
            },
          }),
          res,
        );
      } catch {
        // The peer or the client went away mid-transfer: the answer is cut short, nothing to add.
        res.destroy();
      }
    }),
  );

  return router;
}

function routeName(route: StreamRouteSpec): string {
  return `${route.method.toUpperCase()} ${route.path}`;
}

/** Request logging (route pattern, status, duration: never the id, which is a capability) and error forwarding. */
function mount(
  route: StreamRouteSpec,
  logger: Logger,
  handler: (req: Request, res: Response) => Promise<void>,
): RequestHandler {
  return (req, res, next) => {
    const started = performance.now();
    res.on("finish", () => {
      logger.debug(
        { route: routeName(route), status: res.statusCode, ms: Math.round(performance.now() - started) },
        "request",
      );
    });
    handler(req, res).catch((error: unknown) => {
      if (!req.complete) discardRest(req, res);
      next(error);
    });
  };
}

/** HTTP Basic device credentials, as on the JSON routes: every failure is the same 401. */
async function authenticate(accounts: AccountService, req: Request): Promise<DevicePrincipal> {
  const credentials = parseBasicAuth(req.headers.authorization);
  if (!credentials) throw unauthorized();
  return accounts.authenticate(credentials.username, credentials.password, req.ip ?? req.socket.remoteAddress ?? "");
}
