/**
 * `/asyncapi.json`: the AsyncAPI 3.0 document of the Socket.IO events. It is
 * checked with the AsyncAPI parser and structurally, against the protocol's
 * event table (`socketNamespaces`, which the compiler ties to the event
 * maps `ClientToServerEvents`, `ServerToClientEvents` and
 * `SealedClientToServerEvents`: an event added to a map without a schema in
 * the table does not compile), and the gateway is asked whether it answers
 * exactly the client events the document lists.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { Parser } from "@asyncapi/parser";
import { limits, rateLimitInfo, socketNamespaces, type NamespaceSpec, type RateLimitName } from "@zimchat/protocol";
import { io as connectClient, type Socket } from "socket.io-client";
import { defaultRateLimits, type RateLimits } from "../../src/config.js";
import { startServer, type TestServer } from "../support/harness.js";
import { sealedSocket } from "../support/sealed.js";

type Json = Record<string, any>;

/** The object a local `$ref` points to (following references to references), or undefined. */
function resolve(doc: Json, ref: string): unknown {
  assert.ok(ref.startsWith("#/"), `local reference: ${ref}`);
  let node: unknown = doc;
  for (const part of ref.slice(2).split("/"))
    node = (node as Json | undefined)?.[part.replaceAll("~1", "/").replaceAll("~0", "~")];
  const next = (node as Json | undefined)?.$ref;
  return typeof next === "string" ? resolve(doc, next) : node;
}

/** Every `$ref` in a document. */
function refsIn(node: unknown, out: string[] = []): string[] {
  if (Array.isArray(node)) for (const item of node) refsIn(item, out);
  else if (node && typeof node === "object") {
    for (const [key, value] of Object.entries(node)) {
      if (key === "$ref" && typeof value === "string") out.push(value);
      else refsIn(value, out);
    }
  }
  return out;
}

async function parserErrors(doc: Json): Promise<string[]> {
  const { diagnostics } = await new Parser().parse(JSON.stringify(doc));
  // Severity 0 is an error (1 warning, 2 information, 3 hint).
  return diagnostics.filter((d) => d.severity === 0).map((d) => `${d.code}: ${d.message} at ${d.path.join("/")}`);
}

describe("AsyncAPI document of the Socket.IO events", () => {
  const rateLimits: RateLimits = {
    ...defaultRateLimits,
    send: { points: 17, durationSeconds: 3 },
    sealedSend: { points: 23, durationSeconds: 7 },
  };
  let server: TestServer;
  let doc: Json;
  before(async () => {
    server = await startServer({ rateLimits });
    const res = await server.http().get("/asyncapi.json");
    assert.equal(res.status, 200);
    assert.match(res.headers["content-type"] ?? "", /application\/json/);
    doc = res.body;
  });
  after(async () => server.stop());

  it("is valid AsyncAPI 3.0 for the AsyncAPI parser, which refuses a broken copy", async () => {
    assert.equal(doc.asyncapi, "3.0.0");
    assert.deepEqual(await parserErrors(doc), []);
    // The check can fail: a dangling reference and a bad action are errors.
    const broken = structuredClone(doc);
    const [first] = Object.keys(broken.operations);
    broken.operations[first!].action = "publish";
    broken.operations[first!].channel = { $ref: "#/channels/nowhere" };
    assert.ok((await parserErrors(broken)).length > 0, "the parser reports a broken document");
  });

  it("resolves every reference, and each operation's messages belong to its channel", () => {
    const refs = refsIn(doc);
    assert.ok(refs.length > 20);
    for (const ref of refs) assert.ok(resolve(doc, ref) !== undefined, `${ref} resolves`);
    for (const [id, op] of Object.entries(doc.operations as Record<string, Json>)) {
      assert.ok(op.action === "send" || op.action === "receive", `${id}: action`);
      const channelRef: string = op.channel.$ref;
      for (const m of op.messages)
        assert.ok(m.$ref.startsWith(`${channelRef}/messages/`), `${id}: ${m.$ref} is a message of ${channelRef}`);
      if (op.reply) {
        for (const m of op.reply.messages)
          assert.ok(m.$ref.startsWith(`${op.reply.channel.$ref}/messages/`), `${id}: reply ${m.$ref}`);
      }
    }
    for (const [id, channel] of Object.entries(doc.channels as Record<string, Json>)) {
      for (const m of Object.values(channel.messages as Record<string, Json>)) {
        assert.ok(m.$ref.startsWith("#/components/messages/"), `${id}: ${m.$ref} is a component message`);
      }
    }
  });

  it("documents every namespace and every event of the protocol's event maps, with payloads, callbacks and rate limits", () => {
    const namespaces = Object.entries(socketNamespaces) as [string, NamespaceSpec][];
    assert.deepEqual(
      Object.values(doc.channels as Record<string, Json>)
        .map((c) => c.address)
        .sort(),
      namespaces.map(([n]) => n).sort(),
    );
    for (const [namespace, spec] of namespaces) {
      const [channelId, channel] = Object.entries(doc.channels as Record<string, Json>).find(
        ([, c]) => c.address === namespace,
      )!;
      const messages = Object.values(channel.messages as Record<string, Json>).map((m) => resolve(doc, m.$ref) as Json);
      const events = (direction: string): string[] =>
        messages
          .filter((m) => m["x-socketio"]?.direction === direction)
          .map((m) => m["x-socketio"].event)
          .sort();
      assert.deepEqual(
        events("client-to-server"),
        Object.keys(spec.clientToServer).sort(),
        `${namespace}: client events`,
      );
      assert.deepEqual(
        events("server-to-client"),
        Object.keys(spec.serverToClient).sort(),
        `${namespace}: server events`,
      );
      const operations = Object.values(doc.operations as Record<string, Json>).filter(
        (o) => o.channel.$ref === `#/channels/${channelId}`,
      );

      for (const [event, e] of Object.entries(spec.clientToServer)) {
        const op = operations.find(
          (o) => (resolve(doc, o.messages[0].$ref) as Json).name === event && o.action === "receive",
        );
        assert.ok(op, `${namespace} ${event}: a receive operation`);
        const request = resolve(doc, op.messages[0].$ref) as Json;
        assert.ok(request.payload, `${namespace} ${event}: payload schema`);
        const answer = resolve(doc, op.reply.messages[0].$ref) as Json;
        assert.equal(answer["x-socketio"].ackOf, event);
        // The callback's answer: { ok: true, value } or { ok: false, status, error }.
        const answerSchema = (answer.payload.$ref ? resolve(doc, answer.payload.$ref) : answer.payload) as Json;
        const variants = JSON.stringify(answerSchema);
        assert.match(variants, /"ok"/);
        assert.match(variants, /#\/components\/schemas\/Error/);
        const expected = e.rateLimits.map((name) => ({
          name,
          count: rateLimits[name].points,
          windowSeconds: rateLimits[name].durationSeconds,
        }));
        assert.deepEqual(
          op["x-rate-limit"].map((l: Json) => ({ name: l.name, count: l.count, windowSeconds: l.windowSeconds })),
          expected,
          `${namespace} ${event}: limits`,
        );
      }
      for (const [event, e] of Object.entries(spec.serverToClient)) {
        const op = operations.find(
          (o) => (resolve(doc, o.messages[0].$ref) as Json).name === event && o.action === "send",
        );
        assert.ok(op, `${namespace} ${event}: a send operation`);
        assert.equal(
          !!(resolve(doc, op.messages[0].$ref) as Json).payload,
          !!e.payload,
          `${namespace} ${event}: payload`,
        );
        assert.equal(!!op.reply, !!e.ack, `${namespace} ${event}: confirmation callback`);
      }
      // Handshake: credentials on the default namespace, none on /sealed.
      const auth = channel["x-socketio"].handshakeAuth as Json | null;
      assert.equal(!!auth, !!spec.auth, `${namespace}: handshake auth`);
      if (auth) {
        const schema = (auth.$ref ? resolve(doc, auth.$ref) : auth) as { properties: Json };
        assert.deepEqual(Object.keys(schema.properties).sort(), ["password", "username"]);
      }
    }
  });

  it("states the payload limit, the connection limits and every rate limit's key as the server is configured", () => {
    assert.equal(doc["x-max-payload-bytes"], limits.maxBodyBytes);
    assert.deepEqual(doc["x-connection-limits"], { ...server.config.connectionLimits });
    const main = Object.values(doc.channels as Record<string, Json>).find((c) => c.address === "/")!;
    const names = main["x-socketio"].handshakeRateLimits.map((l: Json) => l.name as RateLimitName);
    assert.deepEqual(names, ["failedAuthPerAddress", "failedAuthPerAddressAndDevice"]);
    for (const l of main["x-socketio"].handshakeRateLimits as Json[])
      assert.equal(l.key, rateLimitInfo[l.name as RateLimitName].key);
  });

  it("is listed in /openapi.json", async () => {
    const res = await server.http().get("/openapi.json");
    assert.ok(res.body.paths["/asyncapi.json"]?.get, "GET /asyncapi.json is documented");
    assert.match(res.body.info.description, /asyncapi\.json/);
  });

  it("the gateway answers every client event the document lists, with the callback shape it states", async () => {
    const device = await server.register();
    const main = await server.connect(device);
    const sealed = await sealedSocket(server);
    try {
      for (const [namespace, spec] of Object.entries(socketNamespaces) as [string, NamespaceSpec][]) {
        const socket = (namespace === "/" ? main.socket : sealed) as unknown as Socket;
        for (const event of Object.keys(spec.clientToServer)) {
          // An empty payload fails every event's schema: the answer is the invalid_request body.
          const answer = await socket.timeout(5000).emitWithAck(event, {});
          assert.equal(answer.ok, false, `${namespace} ${event}`);
          assert.equal(answer.status, 400, `${namespace} ${event}`);
          assert.equal(answer.error.code, "invalid_request", `${namespace} ${event}`);
        }
      }
      // The handshake refusal is the error body the document states.
      const refused = connectClient(server.url, {
        auth: { username: "nobody.1", password: "x".repeat(32) },
        transports: ["websocket"],
        reconnection: false,
        forceNew: true,
      });
      const error = await new Promise<Error & { data?: Json }>((resolve) => refused.once("connect_error", resolve));
      refused.close();
      assert.equal(error.data?.code, "unauthorized");
    } finally {
      main.close();
      sealed.close();
    }
  });
});
