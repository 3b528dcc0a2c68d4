import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { defaultRateLimits } from "../../src/index.js";
import { startServer, type TestServer } from "../support/harness.js";
import { SignalDevice } from "@zimchat/testing/signal";

const bin = fileURLToPath(new URL("../../../bin/zimchat.js", import.meta.url));

describe("registration modes and invites", () => {
  let server: TestServer;
  const cli = (...args: string[]): string =>
    execFileSync(process.execPath, [bin, ...args, "--data-dir", server.dataDir, "--database-url", server.databaseUrl], {
      encoding: "utf8",
    });

  before(async () => {
    server = await startServer({
      registration: "invite",
      rateLimits: { ...defaultRateLimits, register: { points: 100, durationSeconds: 60 } },
    });
  });
  after(async () => server.stop());

  it("needs an invite, takes a CLI-made invite exactly its number of uses, and refuses revoked ones", async () => {
    const noInvite = await server.http().post("/v1/accounts").send(new SignalDevice().registration("no_invite"));
    assert.equal(noInvite.status, 403);
    assert.equal(noInvite.body.code, "invite_required");

    const created = JSON.parse(cli("invite", "create", "--uses", "2", "--expires", "1h", "--json")) as {
      id: string;
      token: string;
      maxUses: number;
    };
    assert.equal(created.maxUses, 2);
    const bogus = await server
      .http()
      .post("/v1/accounts")
      .send(new SignalDevice().registration("bogus_invite", "zc_not_a_token"));
    assert.equal(bogus.status, 403);
    assert.equal(bogus.body.code, "invalid_invite");

    for (const name of ["invited_1", "invited_2"]) {
      const res = await server.http().post("/v1/accounts").send(new SignalDevice().registration(name, created.token));
      assert.equal(res.status, 201, JSON.stringify(res.body));
      assert.equal(res.body.deviceId, 1);
      assert.equal(res.body.username, name);
    }
    const third = await server
      .http()
      .post("/v1/accounts")
      .send(new SignalDevice().registration("invited_3", created.token));
    assert.equal(third.body.code, "invalid_invite");

    // A refused registration (username taken) does not spend a use.
    const single = JSON.parse(cli("invite", "create", "--json")) as { id: string; token: string };
    const taken = await server
      .http()
      .post("/v1/accounts")
      .send(new SignalDevice().registration("invited_1", single.token));
    assert.equal(taken.status, 409);
    assert.equal(taken.body.code, "username_taken");
    const listed = JSON.parse(cli("invite", "list", "--json")) as { id: string; uses: number; maxUses: number }[];
    assert.deepEqual(listed.find((i) => i.id === single.id)?.uses, 0);
    assert.deepEqual(listed.find((i) => i.id === created.id)?.uses, 2);
    assert.ok(!cli("invite", "list").includes(single.token), "tokens are never listed");

    assert.match(cli("invite", "revoke", single.id), /revoked/);
    const revoked = await server
      .http()
      .post("/v1/accounts")
      .send(new SignalDevice().registration("invited_4", single.token));
    assert.equal(revoked.body.code, "invalid_invite");
  });

  it("concurrent registrations cannot overspend a single-use invite", async () => {
    const { token } = JSON.parse(cli("invite", "create", "--json")) as { token: string };
    const results = await Promise.all(
      Array.from({ length: 8 }, (_, i) =>
        server
          .http()
          .post("/v1/accounts")
          .send(new SignalDevice().registration(`race_${i}`, token)),
      ),
    );
    assert.equal(results.filter((r) => r.status === 201).length, 1);
    assert.deepEqual(
      results.filter((r) => r.status !== 201).map((r) => r.body.code),
      Array(7).fill("invalid_invite"),
    );
  });

  it("limits registrations per client address", async () => {
    const limited = await startServer({
      rateLimits: { ...defaultRateLimits, register: { points: 2, durationSeconds: 60 } },
    });
    try {
      const codes = [];
      for (let i = 0; i < 3; i++)
        codes.push(
          (
            await limited
              .http()
              .post("/v1/accounts")
              .send(new SignalDevice().registration(`limited_${i}`))
          ).status,
        );
      assert.deepEqual(codes, [201, 201, 429]);
    } finally {
      await limited.stop();
    }
  });

  it("keys the registration limit by the address a trusted proxy forwards, and ignores X-Forwarded-For otherwise", async () => {
    const rateLimits = { ...defaultRateLimits, register: { points: 1, durationSeconds: 60 } };
    const direct = await startServer({ rateLimits });
    const proxied = await startServer({ rateLimits, trustProxy: ["loopback"] });
    try {
      const register = (server: typeof direct, name: string, forwardedFor: string) =>
        server
          .http()
          .post("/v1/accounts")
          .set("X-Forwarded-For", forwardedFor)
          .send(new SignalDevice().registration(name))
          .then((r) => r.status);
      // Untrusted: a client cannot dodge the limit by making up addresses.
      assert.deepEqual(
        [await register(direct, "direct_a", "192.0.2.1"), await register(direct, "direct_b", "192.0.2.2")],
        [201, 429],
      );
      // Behind a trusted proxy, two clients get a bucket each; the same client again is refused.
      assert.deepEqual(
        [
          await register(proxied, "proxied_a", "192.0.2.1"),
          await register(proxied, "proxied_b", "192.0.2.2"),
          await register(proxied, "proxied_c", "192.0.2.1"),
        ],
        [201, 201, 429],
      );
    } finally {
      await direct.stop();
      await proxied.stop();
    }
  });

  it("prints help for every command", () => {
    for (const command of [
      [],
      ["serve"],
      ["migrate"],
      ["invite"],
      ["invite", "create"],
      ["invite", "list"],
      ["invite", "revoke"],
    ]) {
      const out = execFileSync(process.execPath, [bin, ...command, "--help"], { encoding: "utf8" });
      assert.match(out, /^Usage: zimchat/m);
    }
  });
});

describe("closed registration", () => {
  let server: TestServer;
  before(async () => {
    server = await startServer({ registration: "closed" });
  });
  after(async () => server.stop());

  it("refuses every registration", async () => {
    const res = await server.http().post("/v1/accounts").send(new SignalDevice().registration("closed_one"));
    assert.equal(res.status, 403);
    assert.equal(res.body.code, "registration_closed");
  });
});

describe("authentication and username lookup", () => {
  let server: TestServer;
  before(async () => {
    server = await startServer({
      rateLimits: { ...defaultRateLimits, usernameLookup: { points: 3, durationSeconds: 60 } },
    });
  });
  after(async () => server.stop());

  it("authenticates with HTTP Basic uuid.deviceId:password", async () => {
    const alice = await server.register("alice_auth");
    const me = await server.http().get("/v1/accounts/whoami").set("Authorization", alice.authHeader);
    assert.equal(me.status, 200);
    assert.deepEqual(me.body, { uuid: alice.uuid, deviceId: 1, username: "alice_auth" });
  });

  it("gives the same 401 for a wrong password and an unknown account", async () => {
    const alice = await server.register();
    const wrong = `Basic ${Buffer.from(`${alice.uuid}.1:${"x".repeat(24)}`).toString("base64")}`;
    const unknown = `Basic ${Buffer.from(`00000000-0000-4000-8000-000000000000.1:${alice.password}`).toString("base64")}`;
    const otherDevice = `Basic ${Buffer.from(`${alice.uuid}.2:${alice.password}`).toString("base64")}`;
    const bodies = [];
    for (const header of [wrong, unknown, otherDevice, "Basic !!!", "Bearer abc"]) {
      const res = await server.http().get("/v1/accounts/whoami").set("Authorization", header);
      assert.equal(res.status, 401);
      bodies.push(res.body);
    }
    for (const body of bodies) assert.deepEqual(body, bodies[0]);
    assert.equal(bodies[0].code, "unauthorized");
  });

  it("looks up usernames, rate limited per requester with Retry-After", async () => {
    const alice = await server.register();
    const bob = await server.register("bob_lookup");
    const found = await server.http().get("/v1/accounts/username/bob_lookup").set("Authorization", alice.authHeader);
    assert.equal(found.status, 200);
    assert.deepEqual(found.body, { uuid: bob.uuid });
    const missing = await server.http().get("/v1/accounts/username/nobody_here").set("Authorization", alice.authHeader);
    assert.equal(missing.status, 404);
    assert.equal(missing.body.code, "not_found");
    await server.http().get("/v1/accounts/username/bob_lookup").set("Authorization", alice.authHeader);
    const limited = await server.http().get("/v1/accounts/username/bob_lookup").set("Authorization", alice.authHeader);
    assert.equal(limited.status, 429);
    assert.equal(limited.body.code, "rate_limited");
    assert.ok(Number(limited.headers["retry-after"]) >= 1);
    // Another requester has its own budget.
    const other = await server.http().get("/v1/accounts/username/bob_lookup").set("Authorization", bob.authHeader);
    assert.equal(other.status, 200);
    const unauthenticated = await server.http().get("/v1/accounts/username/bob_lookup");
    assert.equal(unauthenticated.status, 401);
  });
});
