/**
 * Bench accounts on the homeserver, registered over REST like a real client
 * (`POST /v1/accounts`), all with the same keys (createAccountKeys in @zimchat/testing/signal).
 */
import { randomBytes, randomInt } from "node:crypto";
import { limits, registerResponseSchema, routes, type RegisterRequest } from "@zimchat/protocol";
import type { AccountKeys } from "@zimchat/testing/signal";

/** What the harness needs to connect as, and send to, one account's device 1. */
export interface BenchAccount {
  uuid: string;
  password: string;
  registrationId: number;
}

/** Options of {@link registerAccounts}. */
export interface RegisterOptions {
  baseUrl: string;
  count: number;
  keys: AccountKeys;
  /** Requests in flight at once. @default 50 */
  concurrency?: number;
  onProgress?: (done: number) => void;
}

/**
 * Registers `count` accounts named `bench00000`... and resolves with them in
 * order. Fails on the first refusal, with the server's status and body.
 */
export async function registerAccounts(options: RegisterOptions): Promise<BenchAccount[]> {
  const accounts = new Array<BenchAccount>(options.count);
  let next = 0;
  let done = 0;
  const worker = async (): Promise<void> => {
    while (next < options.count) {
      const index = next++;
      accounts[index] = await registerOne(options, index);
      done += 1;
      if (done % 1000 === 0) options.onProgress?.(done);
    }
  };
  await Promise.all(Array.from({ length: Math.min(options.concurrency ?? 50, options.count) }, worker));
  return accounts;
}

async function registerOne(options: RegisterOptions, index: number): Promise<BenchAccount> {
  const password = randomBytes(24).toString("base64url");
  const registrationId = randomInt(limits.minRegistrationId, limits.maxRegistrationId + 1);
  const body: RegisterRequest = {
    username: `bench${String(index).padStart(5, "0")}`,
    password,
    registrationId,
    ...options.keys,
  };
  const response = await fetch(new URL(routes.register.path, options.baseUrl), {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  const text = await response.text();
  if (response.status !== routes.register.success.status) {
    throw new Error(`POST ${routes.register.path} for ${body.username}: ${response.status} ${text}`);
  }
  const { uuid } = registerResponseSchema.parse(JSON.parse(text));
  return { uuid, password, registrationId };
}
