// TEMPORARY: replaced by the wiring to ./attachments.js when that module lands.
import type { Readable } from "node:stream";
import type { AttachmentPointer } from "./content.js";
import type { HttpApi } from "./http-api.js";

/** A file to attach: its bytes, a stream of them, or a path. */
export type AttachmentSource = Buffer | Readable | { path: string };

export async function encryptAndUpload(_api: HttpApi, _source: AttachmentSource, _options: { contentType?: string; fileName?: string }): Promise<AttachmentPointer> {
  throw new Error("attachments are not wired yet");
}

export async function downloadAttachment(_api: HttpApi, _pointer: AttachmentPointer, _destination?: string): Promise<Buffer | undefined> {
  throw new Error("attachments are not wired yet");
}
