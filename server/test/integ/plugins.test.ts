import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { execFile, spawn } from "node:child_process";
import { randomUUID } from "node:crypto";
import { existsSync, mkdtempSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { PrivateKey } from "@signalapp/libsignal-client";
import {
  definePlugin,
  storageLimits,
  type HookName,
  type PluginContext,
  type Refusal,
  type ServerHooks,
} from "@zimchat/plugin-sdk/server";
import { accessKeyHeader, limits, type MultiRecipientRequest } from "@zimchat/protocol";
import { z } from "zod";
import {
  ConfigError,
  defaultRateLimits,
  openHomeserver,
  PluginError,
  PluginStorageError,
  resolveConfig,
  type PluginSpec,
  type RateLimits,
} from "../../src/index.js";
import type { SeizureReport } from "../../src/seizure/report.js";
import {
  encryptFor,
  freshDatabase,
  linkDevice,
  signedEc,
  signedKyber,
  startServer,
  startSession,
  type TestServer,
} from "../support/harness.js";
import { certificateFor, sealedSocket, setAccess } from "../support/sealed.js";
import { SignalDevice } from "@zimchat/testing/signal";

const bin = fileURLToPath(new URL("../../../bin/zimchat.js", import.meta.url));
const b64 = (bytes: Uint8Array): string => Buffer.from(bytes).toString("base64");
const fromB64 = (s: string): Uint8Array<ArrayBuffer> => new Uint8Array(Buffer.from(s, "base64"));
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

const roomyLimits: RateLimits = {
  ...defaultRateLimits,
  register: { points: 10_000, durationSeconds: 3600 },
  linkCode: { points: 10_000, durationSeconds: 3600 },
};

/** What a test plugin does when asked: accept, refuse, throw, never answer, or answer nonsense. */
type Behaviour = "accept" | "refuse" | "throw" | "hang" | "malformed";

/** One recorded hook call. */
interface Call {
  hook: HookName;
  payload: Record<string, unknown>;
}

/**
 * A plugin that records every hook call, and whose veto hooks (and, when
 * told, observers) behave as the test sets them.
 */
function recorder(name: string) {
  const calls: Call[] = [];
  const state = {
    envelope: "accept" as Behaviour,
    register: "accept" as Behaviour,
    /** Observer hooks that throw (or hang, for the ones listed in `hang`). */
    throwIn: new Set<HookName>(),
    hangIn: new Set<HookName>(),
    /** A recipient account whose sends are refused whatever `envelope` says. */
    refuseRecipient: null as string | null,
  };
  const veto = (behaviour: Behaviour, code: string): Refusal | void | Promise<never> => {
    switch (behaviour) {
      case "accept":
        return;
      case "refuse":
        return { code, reason: `Refused by ${name}`, retryAfterSeconds: 60 };
      case "throw":
        throw new Error(`${name} broke`);
      case "hang":
        return new Promise<never>(() => {});
      case "malformed":
        return { code: "Not A Code", reason: "x" };
    }
  };
  const observe =
    (hook: HookName) =>
    (payload: object): void | Promise<void> => {
      calls.push({ hook, payload: { ...payload } });
      if (state.throwIn.has(hook)) throw new Error(`${name} broke in ${hook}`);
      if (state.hangIn.has(hook)) return new Promise<never>(() => {});
    };
  const plugin = definePlugin({
    name,
    configSchema: z.object({}).strict(),
    setup() {
      return {
        beforeAccountRegistered(candidate) {
          calls.push({ hook: "beforeAccountRegistered", payload: { ...candidate } });
          return veto(state.register, "not_today");
        },
        beforeEnvelopeAccepted(candidate) {
          calls.push({ hook: "beforeEnvelopeAccepted", payload: { ...candidate } });
          if (candidate.recipientAccountId === state.refuseRecipient)
            return { code: "not_this_one", reason: "Not to this recipient" };
          return veto(state.envelope, "no_sends_today");
        },
        accountRegistered: observe("accountRegistered"),
        deviceLinked: observe("deviceLinked"),
        deviceRemoved: observe("deviceRemoved"),
        keysUploaded: observe("keysUploaded"),
        identityKeyChanged: observe("identityKeyChanged"),
        envelopeDelivered: observe("envelopeDelivered"),
      };
    },
  });
  return { plugin, calls, state, of: (hook: HookName) => calls.filter((c) => c.hook === hook).map((c) => c.payload) };
}

/** Waits until `check` holds (observers that are not awaited). */
async function eventually(check: () => boolean, timeoutMs = 3000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > end) throw new Error("condition not met in time");
    await sleep(10);
  }
}

/** The exact field names of a payload, sorted. */
const fields = (payload: object | undefined): string[] => Object.keys(payload ?? {}).sort();

describe("server plugins: every hook fires with its documented payload", () => {
  const rec = recorder("recorder");
  let server: TestServer;
  const logs: string[] = [];
  before(async () => {
    server = await startServer({ rateLimits: roomyLimits, plugins: [{ use: rec.plugin }], logLevel: "info" }, logs);
  });
  after(async () => server.stop());

  it("registration, key upload, linking, a send, delivery, unlinking and an identity reset, metadata only", async () => {
    const secrets: string[] = [];
    const alice = await server.register("plugin_alice");
    secrets.push(alice.password);
    // Observers are awaited after the commit: the event is there when the answer is.
    assert.deepEqual(rec.of("beforeAccountRegistered"), [{ username: "plugin_alice" }]);
    const [registered] = rec.of("accountRegistered");
    assert.deepEqual(fields(registered), ["accountId", "identityKey", "time", "username"]);
    assert.equal(registered!.accountId, alice.uuid);
    assert.equal(registered!.username, "plugin_alice");
    assert.equal(registered!.identityKey, b64(alice.identity.getPublicKey().serialize()));
    assert.ok(Math.abs((registered!.time as number) - Date.now()) < 5000);

    const upload = await server
      .http()
      .put("/v1/keys")
      .set("Authorization", alice.authHeader)
      .send(alice.keyUpload(3, 2));
    assert.equal(upload.status, 204, JSON.stringify(upload.body));
    const [keys] = rec.of("keysUploaded");
    assert.deepEqual(
      { ...keys, time: 0 },
      {
        accountId: alice.uuid,
        deviceId: 1,
        ecPreKeys: 3,
        kyberPreKeys: 2,
        signedPreKey: false,
        lastResortKey: false,
        time: 0,
      },
    );
    const rotate = await server
      .http()
      .put("/v1/keys")
      .set("Authorization", alice.authHeader)
      .send({ signedPreKey: alice.signedPreKey(), pqLastResortPreKey: alice.kyberPreKey() });
    assert.equal(rotate.status, 204);
    assert.deepEqual(
      { ...rec.of("keysUploaded")[1], time: 0 },
      {
        accountId: alice.uuid,
        deviceId: 1,
        ecPreKeys: 0,
        kyberPreKeys: 0,
        signedPreKey: true,
        lastResortKey: true,
        time: 0,
      },
    );

    const { device: second } = await linkDevice(server, alice);
    secrets.push(second.password);
    assert.deepEqual({ ...rec.of("deviceLinked")[0], time: 0 }, { accountId: alice.uuid, deviceId: 2, time: 0 });

    const bob = await server.register("plugin_bob");
    secrets.push(bob.password);
    await startSession(server, alice, bob);
    const messages = await encryptFor(
      alice,
      { uuid: bob.uuid, devices: [{ deviceId: 1, registrationId: bob.registrationId }] },
      "marker plaintext 4711",
    );
    secrets.push(...messages.map((m) => m.content));
    const sent = await server
      .http()
      .put(`/v1/messages/${bob.uuid}`)
      .set("Authorization", alice.authHeader)
      .send({ messages });
    assert.equal(sent.status, 200, JSON.stringify(sent.body));
    const [candidate] = rec.of("beforeEnvelopeAccepted");
    assert.deepEqual(candidate, {
      sender: { accountId: alice.uuid, deviceId: 1 },
      recipientAccountId: bob.uuid,
      deviceCount: 1,
      bytes: fromB64(messages[0]!.content).length,
      sealed: false,
      kind: "single",
      originServer: null,
    });

    const bobSocket = await server.connect(bob);
    const [envelope] = await bobSocket.waitFor(1);
    const acked = await bobSocket.socket.emitWithAck("ack", { ids: [envelope!.id] });
    assert.deepEqual(acked, { ok: true, value: { deleted: 1 } });
    bobSocket.close();
    await eventually(() => rec.of("envelopeDelivered").length === 1);
    assert.deepEqual(
      { ...rec.of("envelopeDelivered")[0], time: 0 },
      { accountId: bob.uuid, deviceId: 1, count: 1, time: 0 },
    );
    // Acknowledging again deletes nothing, and tells nobody.
    const again = await server
      .http()
      .post("/v1/messages/ack")
      .set("Authorization", bob.authHeader)
      .send({ ids: [envelope!.id] });
    assert.deepEqual(again.body, { deleted: 0 });

    const unlinked = await server.http().delete("/v1/devices/2").set("Authorization", alice.authHeader);
    assert.equal(unlinked.status, 204);
    assert.deepEqual(
      { ...rec.of("deviceRemoved")[0], time: 0 },
      { accountId: alice.uuid, deviceId: 2, reason: "unlinked", time: 0 },
    );

    const { device: third } = await linkDevice(server, alice);
    secrets.push(third.password);
    const identity = PrivateKey.generate();
    const reset = await server
      .http()
      .put("/v1/accounts/identity")
      .set("Authorization", alice.authHeader)
      .send({
        registrationId: 4242,
        identityKey: b64(identity.getPublicKey().serialize()),
        signedPreKey: signedEc(identity, 77),
        pqLastResortPreKey: signedKyber(identity, 78),
      });
    assert.equal(reset.status, 204, JSON.stringify(reset.body));
    assert.deepEqual(
      { ...rec.of("identityKeyChanged")[0], time: 0 },
      {
        accountId: alice.uuid,
        identityKey: b64(identity.getPublicKey().serialize()),
        previousIdentityKey: b64(alice.identity.getPublicKey().serialize()),
        time: 0,
      },
    );
    assert.deepEqual(
      { ...rec.of("deviceRemoved")[1], time: 0 },
      { accountId: alice.uuid, deviceId: third.deviceId, reason: "identity_reset", time: 0 },
    );

    // Every payload has exactly the documented fields, and none carries a secret.
    const documented: Partial<Record<HookName, string[]>> = {
      beforeAccountRegistered: ["username"],
      accountRegistered: ["accountId", "identityKey", "time", "username"],
      keysUploaded: ["accountId", "deviceId", "ecPreKeys", "kyberPreKeys", "lastResortKey", "signedPreKey", "time"],
      deviceLinked: ["accountId", "deviceId", "time"],
      deviceRemoved: ["accountId", "deviceId", "reason", "time"],
      identityKeyChanged: ["accountId", "identityKey", "previousIdentityKey", "time"],
      beforeEnvelopeAccepted: [
        "bytes",
        "deviceCount",
        "kind",
        "originServer",
        "recipientAccountId",
        "sealed",
        "sender",
      ],
      envelopeDelivered: ["accountId", "count", "deviceId", "time"],
    };
    assert.deepEqual(new Set(rec.calls.map((c) => c.hook)), new Set(Object.keys(documented)));
    for (const call of rec.calls) assert.deepEqual(fields(call.payload), documented[call.hook], call.hook);
    const everything = JSON.stringify(rec.calls);
    for (const secret of secrets) assert.ok(!everything.includes(secret), "a password or ciphertext reached a plugin");
    assert.doesNotMatch(everything, /marker plaintext|127\.0\.0\.1|::1|password|content/);
  });

  it("payloads are frozen copies: a plugin cannot change what the server or the next plugin sees", async () => {
    const before = rec.calls.length;
    const carol = await server.register("plugin_carol");
    assert.equal(rec.calls.length, before + 2);
    const whoami = await server.http().get("/v1/accounts/whoami").set("Authorization", carol.authHeader);
    assert.equal(whoami.body.username, "plugin_carol");
  });
});

describe("server plugins: refusing a send", () => {
  const rec = recorder("gatekeeper");
  let server: TestServer;
  let alice: SignalDevice;
  let bob: SignalDevice;
  let bobKey: Buffer;
  before(async () => {
    server = await startServer({ rateLimits: roomyLimits, plugins: [{ use: rec.plugin }] });
    alice = await server.register();
    bob = await server.register();
    bobKey = await setAccess(server, bob);
    await startSession(server, alice, bob);
  });
  after(async () => server.stop());

  const refusalBody = {
    code: "refused_by_plugin",
    message: "Refused by gatekeeper",
    plugin: "gatekeeper",
    pluginCode: "no_sends_today",
    retryAfterSeconds: 60,
  };

  it("answers 403 refused_by_plugin with the plugin's code on REST, socket, sealed and multi-recipient sends, and stores nothing", async () => {
    rec.state.envelope = "refuse";
    try {
      const envelopes = (): Promise<number> => server.home.database.prisma.envelope.count();
      const start = await envelopes();
      const one = async (text: string) => [
        {
          ...(await alice.encrypt(bob.uuid, 1, text)),
          destinationDeviceId: 1,
          destinationRegistrationId: bob.registrationId,
        },
      ];

      const rest = await server
        .http()
        .put(`/v1/messages/${bob.uuid}`)
        .set("Authorization", alice.authHeader)
        .send({ messages: await one("rest") });
      assert.equal(rest.status, 403);
      assert.deepEqual(rest.body, refusalBody);
      assert.equal(rest.headers["retry-after"], "60");

      const aliceSocket = await server.connect(alice);
      const viaSocket = await aliceSocket.socket.emitWithAck("send", {
        destination: bob.uuid,
        messages: await one("socket"),
      });
      aliceSocket.close();
      assert.deepEqual(viaSocket, { ok: false, status: 403, error: refusalBody });

      const certificate = await certificateFor(server, alice);
      const sealedMessages = [
        {
          ...(await alice.sealedEncrypt(bob.uuid, 1, "sealed", certificate)),
          destinationDeviceId: 1,
          destinationRegistrationId: bob.registrationId,
        },
      ];
      const sealed = await server
        .http()
        .put(`/v1/messages/${bob.uuid}`)
        .set(accessKeyHeader, b64(bobKey))
        .send({ messages: sealedMessages });
      assert.equal(sealed.status, 403);
      assert.deepEqual(sealed.body, refusalBody);

      const socket = await sealedSocket(server);
      const viaSealedSocket = await socket.emitWithAck("send", {
        destination: bob.uuid,
        messages: sealedMessages,
        accessKey: b64(bobKey),
      });
      assert.deepEqual(viaSealedSocket, { ok: false, status: 403, error: refusalBody });

      const multi = await alice.sealedMultiEncrypt([bob.address], randomUUID(), "group", certificate);
      const request: MultiRecipientRequest = {
        message: b64(multi),
        accessKeys: [{ uuid: bob.uuid, accessKey: b64(bobKey) }],
      };
      const viaMulti = await server.http().put("/v1/messages/multi-recipient").send(request);
      assert.equal(viaMulti.status, 403);
      assert.deepEqual(viaMulti.body, refusalBody);
      const viaMultiSocket = await socket.emitWithAck("send-multi", request);
      assert.deepEqual(viaMultiSocket, { ok: false, status: 403, error: refusalBody });
      socket.close();

      assert.equal(await envelopes(), start, "a refused send stores nothing");
      const queue = await server.http().get("/v1/messages").set("Authorization", bob.authHeader);
      assert.deepEqual(queue.body.envelopes, []);

      // What the plugin was asked: sealed sends without credentials have no sender.
      const asked = rec.of("beforeEnvelopeAccepted").slice(-6);
      assert.deepEqual(
        asked.map((c) => [c.sender === null ? null : (c.sender as { accountId: string }).accountId, c.sealed, c.kind]),
        [
          [alice.uuid, false, "single"],
          [alice.uuid, false, "single"],
          [null, true, "single"],
          [null, true, "single"],
          [null, true, "multi_recipient"],
          [null, true, "multi_recipient"],
        ],
      );
      assert.ok(asked.every((c) => c.recipientAccountId === bob.uuid && c.deviceCount === 1));
    } finally {
      rec.state.envelope = "accept";
    }
  });

  it("asks only about sends that would be stored: a device mismatch is answered first, and the plugin is not asked", async () => {
    rec.state.envelope = "refuse";
    try {
      const asked = rec.of("beforeEnvelopeAccepted").length;
      const wrong = [
        { ...(await alice.encrypt(bob.uuid, 1, "x")), destinationDeviceId: 2, destinationRegistrationId: 1 },
      ];
      const res = await server
        .http()
        .put(`/v1/messages/${bob.uuid}`)
        .set("Authorization", alice.authHeader)
        .send({ messages: wrong });
      assert.equal(res.status, 409);
      assert.equal(res.body.code, "mismatched_devices");
      assert.equal(rec.of("beforeEnvelopeAccepted").length, asked);
    } finally {
      rec.state.envelope = "accept";
    }
  });

  it("asks once per recipient account of a multi-recipient send, and one refusal refuses the whole send", async () => {
    const carol = await server.register();
    const carolKey = await setAccess(server, carol);
    await startSession(server, alice, carol);
    const certificate = await certificateFor(server, alice);
    const multi = await alice.sealedMultiEncrypt([bob.address, carol.address], randomUUID(), "to two", certificate);
    const request = {
      message: b64(multi),
      accessKeys: [
        { uuid: bob.uuid, accessKey: b64(bobKey) },
        { uuid: carol.uuid, accessKey: b64(carolKey) },
      ],
    };
    const before = rec.of("beforeEnvelopeAccepted").length;
    const ok = await server.http().put("/v1/messages/multi-recipient").send(request);
    assert.equal(ok.status, 200, JSON.stringify(ok.body));
    const asked = rec.of("beforeEnvelopeAccepted").slice(before);
    assert.deepEqual(asked.map((c) => c.recipientAccountId).sort(), [bob.uuid, carol.uuid].sort());
    assert.ok(
      asked.every(
        (c) => c.kind === "multi_recipient" && c.sealed === true && c.sender === null && (c.bytes as number) > 0,
      ),
    );

    // Refusing one recipient refuses the send to both: nothing is stored for either.
    rec.state.refuseRecipient = carol.uuid;
    try {
      const stored = await server.home.database.prisma.envelope.count();
      const again = await alice.sealedMultiEncrypt(
        [bob.address, carol.address],
        randomUUID(),
        "to two, refused",
        certificate,
      );
      const refused = await server
        .http()
        .put("/v1/messages/multi-recipient")
        .send({ ...request, message: b64(again) });
      assert.equal(refused.status, 403);
      assert.equal(refused.body.pluginCode, "not_this_one");
      assert.equal(await server.home.database.prisma.envelope.count(), stored);
    } finally {
      rec.state.refuseRecipient = null;
    }
  });
});

describe("server plugins: a failing plugin does not stop delivery", () => {
  const rec = recorder("flaky");
  let server: TestServer;
  const logs: string[] = [];
  let alice: SignalDevice;
  let bob: SignalDevice;
  before(async () => {
    server = await startServer(
      { rateLimits: roomyLimits, plugins: [{ use: rec.plugin }], pluginHookTimeoutMs: 300, logLevel: "warn" },
      logs,
    );
    alice = await server.register();
    bob = await server.register();
    await startSession(server, alice, bob);
  });
  after(async () => server.stop());

  const failureLine = (hook: string, kind: "failed" | "timed out"): Record<string, unknown> | undefined =>
    logs
      .map((l) => JSON.parse(l) as Record<string, unknown>)
      .find((l) => l.plugin === "flaky" && l.hook === hook && String(l.msg).includes(kind));

  for (const behaviour of ["throw", "hang", "malformed"] as const) {
    it(`beforeEnvelopeAccepted that does "${behaviour}": the send is accepted and delivered, and the log names the plugin and the hook`, async () => {
      rec.state.envelope = behaviour;
      logs.length = 0;
      try {
        const bobSocket = await server.connect(bob);
        await bobSocket.queueEmpty;
        const count = bobSocket.received.length;
        const messages = [
          {
            ...(await alice.encrypt(bob.uuid, 1, `despite ${behaviour}`)),
            destinationDeviceId: 1,
            destinationRegistrationId: bob.registrationId,
          },
        ];
        const started = Date.now();
        const res = await server
          .http()
          .put(`/v1/messages/${bob.uuid}`)
          .set("Authorization", alice.authHeader)
          .send({ messages });
        assert.equal(res.status, 200, JSON.stringify(res.body));
        if (behaviour === "hang") assert.ok(Date.now() - started >= 250, "waited for the budget");
        assert.ok(Date.now() - started < 3000, "did not wait beyond the budget");
        const received = await bobSocket.waitFor(count + 1);
        assert.equal(received.at(-1)!.id, res.body.envelopes[0].id);
        assert.equal(
          await bob.decrypt(alice.uuid, 1, received.at(-1)!.type, received.at(-1)!.content),
          `despite ${behaviour}`,
        );
        const acked = await bobSocket.socket.emitWithAck("ack", { ids: [res.body.envelopes[0].id] });
        assert.equal(acked.ok, true);
        bobSocket.close();
        const line = failureLine("beforeEnvelopeAccepted", behaviour === "hang" ? "timed out" : "failed");
        assert.ok(line, `a log line names the plugin and the hook: ${logs.join("\n")}`);
        assert.equal(line.level, 50);
        if (behaviour === "throw") assert.match(JSON.stringify(line.err), /flaky broke/);
        if (behaviour === "malformed") assert.match(JSON.stringify(line.err), /does not match/);
        for (const m of messages) assert.ok(!logs.join("\n").includes(m.content), "no ciphertext in the logs");
      } finally {
        rec.state.envelope = "accept";
      }
    });
  }

  it("a hanging plugin costs one budget per send, not one per recipient", async () => {
    rec.state.envelope = "hang";
    try {
      const carol = await server.register();
      const dan = await server.register();
      await startSession(server, alice, carol);
      await startSession(server, alice, dan);
      const certificate = await certificateFor(server, alice);
      const multi = await alice.sealedMultiEncrypt(
        [bob.address, carol.address, dan.address],
        randomUUID(),
        "three",
        certificate,
      );
      const started = Date.now();
      const res = await server
        .http()
        .put("/v1/messages/multi-recipient")
        .set("Authorization", alice.authHeader)
        .send({ message: b64(multi) });
      assert.equal(res.status, 200, JSON.stringify(res.body));
      assert.ok(Date.now() - started < 800, `took ${Date.now() - started} ms`);
    } finally {
      rec.state.envelope = "accept";
    }
  });

  it("observers that throw or hang are logged; the request still succeeds, and an acknowledgement never waits on envelopeDelivered", async () => {
    rec.state.throwIn = new Set(["keysUploaded", "accountRegistered"]);
    rec.state.hangIn = new Set(["envelopeDelivered"]);
    logs.length = 0;
    try {
      const erin = await server.register();
      assert.ok(failureLine("accountRegistered", "failed"));
      const upload = await server
        .http()
        .put("/v1/keys")
        .set("Authorization", erin.authHeader)
        .send(erin.keyUpload(1, 1));
      assert.equal(upload.status, 204);
      const counts = await server.http().get("/v1/keys/count").set("Authorization", erin.authHeader);
      assert.deepEqual(counts.body, { ecCount: 1, pqCount: 1 });
      assert.ok(failureLine("keysUploaded", "failed"));

      const messages = [
        {
          ...(await alice.encrypt(bob.uuid, 1, "ack me")),
          destinationDeviceId: 1,
          destinationRegistrationId: bob.registrationId,
        },
      ];
      const sent = await server
        .http()
        .put(`/v1/messages/${bob.uuid}`)
        .set("Authorization", alice.authHeader)
        .send({ messages });
      const started = Date.now();
      const ack = await server
        .http()
        .post("/v1/messages/ack")
        .set("Authorization", bob.authHeader)
        .send({ ids: [sent.body.envelopes[0].id] });
      assert.deepEqual(ack.body, { deleted: 1 });
      assert.ok(Date.now() - started < 250, "the ack did not wait for the hanging observer");
      await eventually(() => failureLine("envelopeDelivered", "timed out") !== undefined);
    } finally {
      rec.state.throwIn = new Set();
      rec.state.hangIn = new Set();
    }
  });
});

describe("server plugins: refusing a registration", () => {
  const rec = recorder("doorman");
  let server: TestServer;
  const logs: string[] = [];
  before(async () => {
    server = await startServer(
      { rateLimits: roomyLimits, plugins: [{ use: rec.plugin }], pluginHookTimeoutMs: 200, logLevel: "error" },
      logs,
    );
  });
  after(async () => server.stop());

  it("a refusal is 403 refused_by_plugin; a throwing, hanging or malformed plugin fails closed with 503 unavailable; neither stores an account", async () => {
    const accounts = (): Promise<number> => server.home.database.prisma.account.count();
    const start = await accounts();
    const attempt = (username: string) =>
      server.http().post("/v1/accounts").send(new SignalDevice().registration(username));

    rec.state.register = "refuse";
    const refused = await attempt("doorman_1");
    assert.equal(refused.status, 403);
    assert.deepEqual(refused.body, {
      code: "refused_by_plugin",
      message: "Refused by doorman",
      plugin: "doorman",
      pluginCode: "not_today",
      retryAfterSeconds: 60,
    });

    for (const behaviour of ["throw", "hang", "malformed"] as const) {
      rec.state.register = behaviour;
      logs.length = 0;
      const failed = await attempt("doorman_1");
      assert.equal(failed.status, 503, behaviour);
      assert.equal(failed.body.code, "unavailable");
      const line = logs
        .map((l) => JSON.parse(l) as Record<string, unknown>)
        .find((l) => l.plugin === "doorman" && l.hook === "beforeAccountRegistered");
      assert.ok(line, `${behaviour}: ${logs.join("\n")}`);
    }
    assert.equal(await accounts(), start);
    assert.equal(rec.of("accountRegistered").length, 0);

    rec.state.register = "accept";
    const accepted = await attempt("doorman_1");
    assert.equal(accepted.status, 201, "the refused username was not taken");
    assert.equal(await accounts(), start + 1);
  });
});

describe("server plugins: loading and config", () => {
  let dir: string;
  let zodUrl: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), "zimchat-plugins-"));
    zodUrl = import.meta.resolve("zod");
    writeFileSync(
      join(dir, "quota.mjs"),
      `import { z } from ${JSON.stringify(zodUrl)};
export default {
  name: "quota",
  configSchema: z.object({ sendsPerHour: z.number().int(), rules: z.array(z.object({ prefix: z.string() })).default([]) }).strict(),
  setup(ctx, config) {
    return { start() { ctx.logger.info({ sendsPerHour: config.sendsPerHour }, "quota plugin started"); } };
  },
};
`,
    );
    writeFileSync(
      join(dir, "named.mjs"),
      `import { z } from ${JSON.stringify(zodUrl)};\nexport const plugin = { name: "named", configSchema: z.object({}), setup: () => ({}) };\n`,
    );
    writeFileSync(join(dir, "not-a-plugin.mjs"), `export default { hello: "world" };\n`);
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  /** Opens a homeserver with these plugins; closes it if it opens. */
  async function open(plugins: PluginSpec[]): Promise<void> {
    const db = freshDatabase();
    try {
      const home = await openHomeserver(
        resolveConfig({ dataDir: db.dataDir, databaseUrl: db.url, logLevel: "silent", plugins }),
      );
      await home.close();
    } finally {
      await db.drop();
    }
  }

  it("refuses a bad config with a ConfigError naming the plugin and the field", async () => {
    await assert.rejects(
      open([{ use: join(dir, "quota.mjs"), config: { sendsPerHour: "lots" } }]),
      (error: unknown) => {
        assert.ok(error instanceof ConfigError);
        assert.equal(error.message, 'plugin "quota": config.sendsPerHour: expected number, received string');
        return true;
      },
    );
    await assert.rejects(
      open([{ use: join(dir, "quota.mjs"), config: { sendsPerHour: 5, rules: [{ prefix: 7 }] } }]),
      /^ConfigError: plugin "quota": config\.rules\[0\]\.prefix: expected string, received number$/,
    );
    await assert.rejects(
      open([{ use: join(dir, "quota.mjs") }]),
      /plugin "quota": config\.sendsPerHour: expected number, received undefined/,
    );
    await assert.rejects(
      open([{ use: join(dir, "quota.mjs"), config: { sendsPerHour: 5, extra: 1 } }]),
      /plugin "quota": config: Unrecognized key: "extra"/,
    );
  });

  it("refuses a module that is not a plugin, one that cannot be found, and duplicate names", async () => {
    await assert.rejects(
      open([{ use: join(dir, "not-a-plugin.mjs") }]),
      (error: unknown) => error instanceof ConfigError && /not-a-plugin\.mjs.*not a server plugin/.test(error.message),
    );
    await assert.rejects(
      open([{ use: join(dir, "missing.mjs") }]),
      (error: unknown) => error instanceof ConfigError && /missing\.mjs" cannot be loaded/.test(error.message),
    );
    await assert.rejects(
      open([{ use: "@zimchat/no-such-plugin" }]),
      (error: unknown) =>
        error instanceof ConfigError && /@zimchat\/no-such-plugin" cannot be loaded/.test(error.message),
    );
    await assert.rejects(
      open([{ use: join(dir, "named.mjs") }, { use: join(dir, "named.mjs") }]),
      (error: unknown) =>
        error instanceof ConfigError &&
        /plugin "named" is listed twice \(plugins\[0\] and plugins\[1\]\)/.test(error.message),
    );
    await assert.rejects(
      open([{ use: { name: "Bad Name", configSchema: z.object({}), setup: () => ({}) } }]),
      /must match/,
    );
    await assert.rejects(
      open([{ use: join(dir, "named.mjs"), confg: {} } as PluginSpec]),
      /plugins\[0\] has unknown key "confg"/,
    );
    // A module's export named `plugin` works too.
    await open([{ use: join(dir, "named.mjs") }]);
  });

  it("the CLI: serve --config with a bad plugin config exits non-zero with the message; a good one starts (paths relative to the config file)", async () => {
    const bad = join(dir, "bad.json");
    writeFileSync(bad, JSON.stringify({ plugins: [{ use: "./quota.mjs", config: { sendsPerHour: "lots" } }] }));
    const dataDir = join(dir, "data");
    const result = await new Promise<{ code: number | null; stderr: string }>((resolve) => {
      execFile(
        process.execPath,
        [bin, "serve", "--config", bad, "--data-dir", dataDir, "--port", "0", "--host", "127.0.0.1"],
        { timeout: 20_000 },
        (error, _stdout, stderr) => resolve({ code: error ? ((error as { code?: number }).code ?? 1) : 0, stderr }),
      );
    });
    assert.notEqual(result.code, 0);
    assert.equal(
      result.stderr.trim(),
      'zimchat: plugin "quota": config.sendsPerHour: expected number, received string',
    );
    assert.ok(
      !existsSync(join(dataDir, "zimchat.db")),
      "a bad plugin config stops start-up before the database is created",
    );

    const unknownKey = join(dir, "unknown.json");
    writeFileSync(unknownKey, JSON.stringify({ plugin: [] }));
    const second = await new Promise<string>((resolve) =>
      execFile(process.execPath, [bin, "serve", "--config", unknownKey, "--data-dir", dataDir], (_e, _o, stderr) =>
        resolve(stderr),
      ),
    );
    assert.match(second, /config file .*unknown\.json: unknown key "plugin"/);

    // ZIMCHAT_CONFIG, run from another working directory: the plugin path resolves against the file.
    const good = join(dir, "good.json");
    writeFileSync(good, JSON.stringify({ plugins: [{ use: "./quota.mjs", config: { sendsPerHour: 5 } }] }));
    const child = spawn(
      process.execPath,
      [bin, "serve", "--data-dir", dataDir, "--port", "0", "--host", "127.0.0.1", "--registration", "open"],
      {
        cwd: tmpdir(),
        env: { ...process.env, ZIMCHAT_CONFIG: good, DATABASE_URL: "" },
      },
    );
    try {
      let out = "";
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no listening line: ${out}`)), 20_000);
        child.stdout.on("data", (chunk: Buffer) => {
          out += chunk.toString();
          if (out.includes('"msg":"listening"')) {
            clearTimeout(timer);
            resolve();
          }
        });
        child.once("exit", (code) => reject(new Error(`exited ${code}: ${out}`)));
      });
      assert.match(out, /"plugin":"quota","sendsPerHour":5,"msg":"quota plugin started"/);
      assert.ok(
        out.indexOf("quota plugin started") < out.indexOf('"msg":"listening"'),
        "plugins start before the server listens",
      );
      assert.equal(statSync(join(dataDir, "plugins", "quota")).mode & 0o777, 0o700);
    } finally {
      child.kill("SIGTERM");
      await new Promise((resolve) => child.once("exit", resolve));
    }
  });

  it("createApp without loaded plugins refuses a config that lists some", async () => {
    const { createApp } = await import("../../src/app.js");
    const db = freshDatabase();
    try {
      const { openDatabase } = await import("../../src/db/database.js");
      const { createLogger } = await import("../../src/logger.js");
      const database = await openDatabase({ databaseUrl: db.url });
      try {
        const config = resolveConfig({
          dataDir: db.dataDir,
          databaseUrl: db.url,
          plugins: [{ use: join(dir, "named.mjs") }],
        });
        assert.throws(() => createApp(config, { database, logger: createLogger("silent") }), ConfigError);
      } finally {
        await database.close();
      }
    } finally {
      await db.drop();
    }
  });
});

describe("server plugins: routes under /plugins/<name>/", () => {
  let server: TestServer;
  const logs: string[] = [];
  const routes = definePlugin({
    name: "routes",
    configSchema: z.object({}),
    setup(ctx) {
      ctx.route({
        method: "GET",
        path: "/v1/hello",
        handler: ({ query, device }) => ({ body: { hello: query.name ?? "world", device } }),
      });
      ctx.route({
        method: "POST",
        path: "/v1/echo/:id",
        auth: "device",
        handler: ({ params, body, device }) => ({ status: 201, body: { id: params.id, body, device } }),
      });
      ctx.route({ method: "DELETE", path: "/v1/nothing", handler: () => ({}) });
      ctx.route({
        method: "GET",
        path: "/v1/boom",
        handler: () => {
          throw new Error("route exploded");
        },
      });
      ctx.route({ method: "GET", path: "/v1/slow", handler: () => new Promise(() => {}) });
      ctx.route({ method: "GET", path: "/v1/odd", handler: () => ({ status: 42 }) as never });
      ctx.route({
        method: "PUT",
        path: "/v1/busy",
        handler: () => ({ status: 409, body: { code: "busy", message: "try later" } }),
      });
      return {};
    },
  });
  before(async () => {
    server = await startServer(
      { rateLimits: roomyLimits, plugins: [{ use: routes }], logLevel: "debug", pluginHookTimeoutMs: 300 },
      logs,
    );
  });
  after(async () => server.stop());

  it("serves routes without and with device credentials", async () => {
    const hello = await server.http().get("/plugins/routes/v1/hello?name=zim");
    assert.equal(hello.status, 200);
    assert.deepEqual(hello.body, { hello: "zim", device: null });

    const alice = await server.register();
    const echo = await server
      .http()
      .post("/plugins/routes/v1/echo/abc-123")
      .set("Authorization", alice.authHeader)
      .send({ a: [1, 2] });
    assert.equal(echo.status, 201);
    assert.deepEqual(echo.body, { id: "abc-123", body: { a: [1, 2] }, device: { accountId: alice.uuid, deviceId: 1 } });

    const anonymous = await server.http().post("/plugins/routes/v1/echo/abc-123").send({});
    assert.equal(anonymous.status, 401);
    assert.equal(anonymous.body.code, "unauthorized");
    const wrong = await server
      .http()
      .post("/plugins/routes/v1/echo/abc-123")
      .set("Authorization", `Basic ${b64(Buffer.from(`${alice.uuid}.1:wrong`))}`)
      .send({});
    assert.equal(wrong.status, 401);

    const nothing = await server.http().delete("/plugins/routes/v1/nothing");
    assert.equal(nothing.status, 204);
    const busy = await server.http().put("/plugins/routes/v1/busy");
    assert.equal(busy.status, 409);
    assert.deepEqual(busy.body, { code: "busy", message: "try later" });
    const missing = await server.http().get("/plugins/routes/v1/none");
    assert.equal(missing.status, 404);
    assert.equal(missing.body.code, "not_found");
    const otherPlugin = await server.http().get("/plugins/other/v1/hello");
    assert.equal(otherPlugin.status, 404);
  });

  it("bodies are JSON with the server's size limit", async () => {
    const alice = await server.register();
    const malformed = await server
      .http()
      .post("/plugins/routes/v1/echo/x")
      .set("Authorization", alice.authHeader)
      .set("content-type", "application/json")
      .send("{nope");
    assert.equal(malformed.status, 400);
    assert.equal(malformed.body.code, "malformed_json");
    const huge = await server
      .http()
      .post("/plugins/routes/v1/echo/x")
      .set("Authorization", alice.authHeader)
      .send({ pad: "x".repeat(limits.maxBodyBytes + 1) });
    assert.equal(huge.status, 413);
    assert.equal(huge.body.code, "body_too_large");
  });

  it("a throwing, hanging or malformed handler is a 500 internal with a log line naming the plugin; the server keeps serving", async () => {
    for (const path of ["/v1/boom", "/v1/slow", "/v1/odd"]) {
      logs.length = 0;
      const res = await server.http().get(`/plugins/routes${path}`);
      assert.equal(res.status, 500, path);
      assert.deepEqual(res.body, { code: "internal", message: "Internal error" });
      const line = logs
        .map((l) => JSON.parse(l) as Record<string, unknown>)
        .find((l) => l.plugin === "routes" && l.hook === "route");
      assert.ok(line, `${path}: ${logs.join("\n")}`);
    }
    assert.equal((await server.http().get("/plugins/routes/v1/hello")).status, 200);
  });

  it("logs the route pattern only: no ids from the path, no credentials", async () => {
    logs.length = 0;
    const alice = await server.register();
    const secretId = `id-${randomUUID()}`;
    await server.http().post(`/plugins/routes/v1/echo/${secretId}`).set("Authorization", alice.authHeader).send({});
    await eventually(() => logs.some((l) => l.includes("/plugins/routes/v1/echo/:id")));
    const text = logs.join("\n");
    assert.match(text, /"route":"POST \/plugins\/routes\/v1\/echo\/:id","status":201/);
    assert.ok(!text.includes(secretId) && !text.includes(alice.password) && !text.includes("127.0.0.1"));
  });
});

describe("server plugins: storage and data directory", () => {
  let server: TestServer;
  const contexts = new Map<string, PluginContext>();
  const keeper = (name: string) =>
    definePlugin({
      name,
      configSchema: z.object({}),
      setup(ctx) {
        contexts.set(name, ctx);
        return {};
      },
    });
  before(async () => {
    server = await startServer({ plugins: [{ use: keeper("alpha") }, { use: keeper("beta") }] });
  });
  after(async () => server.stop());

  it("namespaces each plugin's keys", async () => {
    const a = contexts.get("alpha")!.storage;
    const b = contexts.get("beta")!.storage;
    await a.set("shared", "from alpha");
    assert.equal(await b.get("shared"), null);
    assert.deepEqual(await b.list(""), []);
    await b.set("shared", "from beta");
    assert.equal(await a.get("shared"), "from alpha");
    assert.equal(await b.get("shared"), "from beta");
    await a.set("shared", "alpha again");
    assert.equal(await a.get("shared"), "alpha again");
    assert.equal(await b.delete("shared"), true);
    assert.equal(await b.delete("shared"), false);
    assert.equal(await a.get("shared"), "alpha again");
    assert.equal(await a.delete("shared"), true);
  });

  it("lists in key order, by prefix (with % and _ as plain characters), after a key, up to a limit", async () => {
    const s = contexts.get("alpha")!.storage;
    const keys = ["b", "a", "a-1", "a/2", "ab", "a%", "a_", "A", "é", "log/000002", "log/000010", "log/000001", "z"];
    for (const key of keys) await s.set(key, `v:${key}`);
    const all = await s.list("");
    assert.deepEqual(
      all.map((e) => e.key),
      [...keys].sort(),
    );
    assert.deepEqual(all[0], { key: "A", value: "v:A" });
    assert.deepEqual(
      (await s.list("a")).map((e) => e.key),
      ["a", "a%", "a-1", "a/2", "a_", "ab"],
    );
    assert.deepEqual(
      (await s.list("a_")).map((e) => e.key),
      ["a_"],
    );
    assert.deepEqual(
      (await s.list("a%")).map((e) => e.key),
      ["a%"],
    );
    assert.deepEqual(
      (await s.list("log/")).map((e) => e.key),
      ["log/000001", "log/000002", "log/000010"],
    );
    assert.deepEqual(
      (await s.list("log/", { after: "log/000001", limit: 1 })).map((e) => e.key),
      ["log/000002"],
    );
    assert.deepEqual(
      (await s.list("", { after: "z" })).map((e) => e.key),
      ["é"],
    );
    assert.deepEqual(await s.list("nothing"), []);
    for (const key of keys) await s.delete(key);
  });

  it("enforces the storage limits with clear errors", async () => {
    const s = contexts.get("alpha")!.storage;
    const longKey = "k".repeat(storageLimits.maxKeyLength + 1);
    await assert.rejects(
      s.set(longKey, "v"),
      (e: unknown) => e instanceof PluginStorageError && /key is 257 characters, the limit is 256/.test(e.message),
    );
    await assert.rejects(s.get(longKey), PluginStorageError);
    await s.set("k".repeat(storageLimits.maxKeyLength), "fits");
    // 2 bytes per "é": the limit counts UTF-8 bytes.
    const atLimit = "é".repeat(storageLimits.maxValueBytes / 2);
    await s.set("big", atLimit);
    assert.equal(await s.get("big"), atLimit);
    await assert.rejects(
      s.set("big", `${atLimit}x`),
      (e: unknown) => e instanceof PluginStorageError && /65537 bytes of UTF-8, the limit is 65536/.test(e.message),
    );
    assert.equal(await s.get("big"), atLimit, "a refused write changes nothing");
    await assert.rejects(s.set("", "v"), /must not be empty/);
    await assert.rejects(s.set("n", 42 as never), /value must be a string/);
    await assert.rejects(s.set("nul", "a\u0000b"), /NUL/);
    await assert.rejects(s.list("", { limit: 0 }), /list limit must be a whole number from 1 to 1000/);
    await assert.rejects(s.list("", { limit: storageLimits.maxListLimit + 1 }), /list limit/);
    await s.delete("big");
    await s.delete("k".repeat(storageLimits.maxKeyLength));
  });

  it("gives each plugin its own data directory, mode 0700, and the seizure report describes plugin data", async () => {
    for (const name of ["alpha", "beta"]) {
      const ctx = contexts.get(name)!;
      assert.equal(ctx.dataDir, join(server.dataDir, "plugins", name));
      assert.equal(statSync(ctx.dataDir).mode & 0o777, 0o700);
      assert.equal(ctx.serverName, "localhost");
      assert.equal(ctx.name, name);
    }
    assert.equal(statSync(join(server.dataDir, "plugins")).mode & 0o777, 0o700);
    await contexts.get("alpha")!.storage.set("state", JSON.stringify({ count: 3 }));
    writeFileSync(join(contexts.get("alpha")!.dataDir, "state.json"), '{"count":3}');
    const stdout = await new Promise<string>((resolve, reject) =>
      execFile(
        process.execPath,
        [bin, "seizure-report", "--json", "--data-dir", server.dataDir, "--database-url", server.databaseUrl],
        (error, out, stderr) => (error ? reject(new Error(`${error.message}\n${stderr}`)) : resolve(out)),
      ),
    );
    const report = JSON.parse(stdout) as SeizureReport;
    const table = report.tables.find((t) => t.name === "PluginEntry");
    assert.ok(table);
    assert.equal(table.rows, 1);
    assert.deepEqual(table.columns.map((c) => c.name).sort(), ["key", "plugin", "value"]);
    assert.ok(table.columns.every((c) => c.reveals.length > 10));
    const file = report.files.find((f) => f.path === join("plugins", "alpha", "state.json"));
    assert.equal(file?.kind, "plugin-file");
    assert.ok(report.ok, JSON.stringify(report.checks));
  });
});

describe("server plugins: lifecycle", () => {
  it("sets up and starts in config order before openHomeserver resolves; stops in reverse after sockets close and before the database closes", async () => {
    const events: string[] = [];
    let home: TestServer["home"] | null = null;
    const lifecycle = (name: string) =>
      definePlugin({
        name,
        configSchema: z.object({}),
        setup(ctx): ServerHooks {
          events.push(`setup ${name}`);
          return {
            start: async () => {
              await sleep(5);
              events.push(`start ${name}`);
            },
            stop: async () => {
              // The database is still open: storage works; the HTTP server no longer listens.
              await ctx.storage.set("stopped", "yes");
              assert.equal(await ctx.storage.get("stopped"), "yes");
              events.push(`stop ${name} listening=${home?.httpServer.listening}`);
            },
          };
        },
      });
    const server = await startServer({
      plugins: [{ use: lifecycle("one") }, { use: lifecycle("two") }, { use: lifecycle("three") }],
    });
    home = server.home;
    assert.deepEqual(events, ["setup one", "setup two", "setup three", "start one", "start two", "start three"]);
    assert.deepEqual(server.home.plugins.names, ["one", "two", "three"]);
    await server.stop();
    assert.deepEqual(events.slice(6), [
      "stop three listening=false",
      "stop two listening=false",
      "stop one listening=false",
    ]);
  });

  it("a failing start stops start-up with a PluginError naming the plugin; the plugins already started are stopped", async () => {
    const events: string[] = [];
    const plugin = (name: string, hooks: ServerHooks) =>
      definePlugin({ name, configSchema: z.object({}), setup: () => hooks });
    const plugins: PluginSpec[] = [
      {
        use: plugin("first", {
          start: () => void events.push("start first"),
          stop: () => void events.push("stop first"),
        }),
      },
      {
        use: plugin("broken", {
          start: () => Promise.reject(new Error("no key file")),
          stop: () => void events.push("stop broken"),
        }),
      },
      { use: plugin("never", { start: () => void events.push("start never") }) },
    ];
    const db = freshDatabase();
    try {
      await assert.rejects(
        openHomeserver(resolveConfig({ dataDir: db.dataDir, databaseUrl: db.url, logLevel: "silent", plugins })),
        (error: unknown) => {
          assert.ok(error instanceof PluginError);
          assert.equal(error.plugin, "broken");
          assert.equal(error.hook, "start");
          assert.equal(error.message, 'plugin "broken" failed in start: no key file');
          return true;
        },
      );
      assert.deepEqual(events, ["start first", "stop first"]);

      const hanging = [{ use: plugin("slowpoke", { start: () => new Promise<void>(() => {}) }) }];
      await assert.rejects(
        openHomeserver(
          resolveConfig({
            dataDir: db.dataDir,
            databaseUrl: db.url,
            logLevel: "silent",
            plugins: hanging,
            pluginStartTimeoutMs: 200,
          }),
        ),
        /plugin "slowpoke" failed in start: did not finish within 200 ms/,
      );
      const badSetup = [
        {
          use: definePlugin({
            name: "typo",
            configSchema: z.object({}),
            setup: () => ({ beforeEnvelopeAccept: () => {} }) as never,
          }),
        },
      ];
      await assert.rejects(
        openHomeserver(
          resolveConfig({ dataDir: db.dataDir, databaseUrl: db.url, logLevel: "silent", plugins: badSetup }),
        ),
        /plugin "typo" failed in setup: setup returned an unknown hook "beforeEnvelopeAccept"/,
      );
      const badRoute = [
        {
          use: definePlugin({
            name: "wildcard",
            configSchema: z.object({}),
            setup: (ctx) => (ctx.route({ method: "GET", path: "/v1/*", handler: () => ({}) }), {}),
          }),
        },
      ];
      await assert.rejects(
        openHomeserver(
          resolveConfig({ dataDir: db.dataDir, databaseUrl: db.url, logLevel: "silent", plugins: badRoute }),
        ),
        /plugin "wildcard" failed in setup: route "GET" "\/v1\/\*": Missing parameter name/,
      );
      // The database was closed after each failure: it opens again.
      const home = await openHomeserver(
        resolveConfig({ dataDir: db.dataDir, databaseUrl: db.url, logLevel: "silent" }),
      );
      await home.close();
    } finally {
      await db.drop();
    }
  });
});
