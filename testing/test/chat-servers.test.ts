/**
 * @zimchat/testing/chat-servers: a real ngircd and a real Prosody start on
 * free loopback ports, real IRC and XMPP clients (irc-framework,
 * @xmpp/client, @xmpp/component) talk through them, the servers come back on
 * the same ports after a crash, and stopping one leaves no process behind.
 * Runs in the SQLite pass of the suite only (no database is involved).
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import type { EventEmitter } from "node:events";
import { createServer } from "node:net";
import irc, { type Client as IrcClient, type MessageEvent } from "irc-framework";
import { client as xmppClient, xml, type Element, type XmppEntity } from "@xmpp/client";
import { component as xmppComponent } from "@xmpp/component";
import {
  ngircdAvailable,
  prosodyAvailable,
  chatServerSkip,
  startNgircd,
  startProsody,
  type NgircdServer,
  type ProsodyServer,
} from "../src/chat-servers/index.js";

/** Resolves with the first `event` whose value passes `test`, or rejects after `timeoutMs`. */
function waitFor<T>(emitter: EventEmitter, event: string, test: (value: T) => boolean, timeoutMs = 10_000): Promise<T> {
  return new Promise((resolve, reject) => {
    const listener = (value: T): void => {
      if (!test(value)) return;
      clearTimeout(timer);
      emitter.off(event, listener);
      resolve(value);
    };
    const timer = setTimeout(() => {
      emitter.off(event, listener);
      reject(new Error(`no matching ${event} within ${timeoutMs} ms`));
    }, timeoutMs);
    emitter.on(event, listener);
  });
}

/** Whether a process with this PID exists (signal 0 checks without sending). */
function processExists(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    assert.equal((error as NodeJS.ErrnoException).code, "ESRCH");
    return false;
  }
}

/** Whether `pid` is gone: no process, or a zombie waiting for a parent that may never reap it. */
async function gone(pid: number, timeoutMs = 5_000): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (!processExists(pid)) return true;
    try {
      if (/^State:\s+Z/m.test(readFileSync(`/proc/${pid}/status`, "utf8"))) return true;
    } catch {
      return true;
    }
    if (Date.now() > deadline) return false;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** PIDs of every process whose command line mentions `text` (what `ps` would list). */
function processesMentioning(text: string): number[] {
  return readdirSync("/proc")
    .filter((entry) => /^\d+$/.test(entry))
    .filter((pid) => {
      try {
        return readFileSync(`/proc/${pid}/cmdline`, "utf8").includes(text);
      } catch {
        return false; // exited meanwhile
      }
    })
    .map(Number);
}

describe("ngircd", { skip: chatServerSkip(ngircdAvailable()) }, () => {
  const channel = "#zimchat";
  let server: NgircdServer;
  const clients: IrcClient[] = [];

  /** Connects (or reconnects) `client` as `nick` and joins the channel. */
  async function connect(client: IrcClient, nick: string): Promise<void> {
    const registered = waitFor(client, "registered", () => true);
    client.connect({ host: server.host, port: server.port, nick, username: "zimtest", auto_reconnect: false });
    await registered;
    const joined = waitFor<{ nick: string; channel: string }>(client, "join", (e) => e.nick === nick);
    client.join(channel);
    await joined;
  }

  async function talk(from: IrcClient, to: IrcClient, text: string): Promise<void> {
    const heard = waitFor<MessageEvent>(to, "message", (e) => e.message === text);
    from.say(channel, text);
    const event = await heard;
    assert.equal(event.target, channel);
    assert.equal(event.nick, from.user.nick);
  }

  before(async () => {
    server = await startNgircd({ channels: [channel] });
  });
  after(async () => {
    for (const client of clients) client.quit();
    await server?.stop();
  });

  it("two IRC clients join a predefined channel and talk, with a puppet-length nick", async () => {
    assert.equal(server.url, `irc://127.0.0.1:${server.port}`);
    const alice = new irc.Client();
    const bob = new irc.Client();
    clients.push(alice, bob);
    // 10 characters: over ngircd's default MaxNickLength of 9.
    await Promise.all([connect(alice, "alice[zim]"), connect(bob, "bob_irc")]);
    assert.equal(alice.user.nick, "alice[zim]");
    await talk(alice, bob, "hello from ZimChat");
    await talk(bob, alice, "hello from IRC");
  });

  it("comes back on the same port after a crash, and the clients reconnect", async () => {
    const [alice, bob] = clients as [IrcClient, IrcClient];
    const { port, pid } = server;
    const closed = Promise.all(clients.map((c) => waitFor(c, "close", () => true)));
    await server.kill();
    assert.equal(processExists(pid), false);
    await closed;
    await server.restart();
    assert.equal(server.port, port);
    assert.notEqual(server.pid, pid);
    await Promise.all([connect(alice, "alice[zim]"), connect(bob, "bob_irc")]);
    await talk(alice, bob, "still here");
  });

  it("stop leaves no process and no directory behind; restart() after it starts afresh", async () => {
    const closed = Promise.all(clients.map((c) => waitFor(c, "close", () => true)));
    for (const client of clients.splice(0)) client.quit();
    await closed;
    const { pid, port, dir } = server;
    await server.stop();
    assert.equal(processExists(pid), false);
    assert.deepEqual(processesMentioning(dir), []);
    assert.equal(existsSync(dir), false);
    // The port is free again.
    const probe = createServer();
    await new Promise<void>((resolve, reject) => probe.once("error", reject).listen(port, "127.0.0.1", resolve));
    await new Promise((resolve) => probe.close(resolve));

    // restart() after stop() starts afresh on the same port; stop() once more cleans up.
    await server.restart();
    assert.equal(server.port, port);
    const carol = new irc.Client();
    const registered = waitFor(carol, "registered", () => true);
    carol.connect({ host: server.host, port, nick: "carol", auto_reconnect: false });
    await registered;
    const closed2 = waitFor(carol, "close", () => true);
    carol.quit();
    await closed2;
    await server.stop();
    assert.equal(existsSync(dir), false);
  });
});

describe("Prosody", { skip: chatServerSkip(prosodyAvailable()) }, () => {
  const component = { name: "bridge.example.test", secret: "component-secret" };
  let server: ProsodyServer;
  const entities: XmppEntity[] = [];

  /** Logs in as `username` (SCRAM over plaintext TCP) and sends initial presence. */
  async function login(username: string, password = `${username}-pw`): Promise<XmppEntity> {
    const entity = xmppClient({
      service: `xmpp://127.0.0.1:${server.c2sPort}`,
      domain: server.domain,
      username,
      password,
      resource: "test",
    });
    // Connection errors while the server is down are expected: reconnect retries.
    entity.on("error", () => {});
    entities.push(entity);
    await entity.start();
    await entity.send(xml("presence"));
    return entity;
  }

  function stanza(entity: XmppEntity, test: (s: Element) => boolean): Promise<Element> {
    return waitFor<Element>(entity, "stanza", test);
  }

  /** Joins `room` as `nick` and resolves with the self-presence (status 110). */
  async function join(entity: XmppEntity, room: string, nick: string): Promise<Element> {
    const self = stanza(
      entity,
      (s) =>
        s.is("presence") &&
        s.attrs.from === `${room}/${nick}` &&
        (s.getChild("x", "http://jabber.org/protocol/muc#user")?.children ?? []).some(
          (c) => typeof c !== "string" && c.name === "status" && c.attrs.code === "110",
        ),
    );
    await entity.send(
      xml("presence", { to: `${room}/${nick}` }, xml("x", { xmlns: "http://jabber.org/protocol/muc" })),
    );
    return self;
  }

  before(async () => {
    server = await startProsody({
      component,
      users: [
        { username: "alice", password: "alice-pw" },
        { username: "bob", password: "bob-pw" },
      ],
    });
  });
  after(async () => {
    await Promise.allSettled(entities.map((e) => e.stop()));
    await server?.stop();
  });

  it("runs as its own process, not as root, with a log in its directory", () => {
    assert.equal(server.mucDomain, "conference.example.test");
    assert.notEqual(server.c2sPort, server.componentPort);
    const status = readFileSync(`/proc/${server.pid}/status`, "utf8");
    const uid = Number(/^Uid:\s+(\d+)/m.exec(status)?.[1]);
    if (process.getuid?.() === 0) assert.notEqual(uid, 0, "Prosody runs as root");
    assert.match(readFileSync(`/proc/${server.pid}/cmdline`, "utf8"), /prosody/);
    assert.match(readFileSync(server.logFile, "utf8"), /Activated service 'c2s' on \[127\.0\.0\.1\]/);
  });

  it("two users talk in a new MUC room once its creator unlocks it", async () => {
    const [alice, bob] = await Promise.all([login("alice"), login("bob")]);
    const room = `zimchat@${server.mucDomain}`;
    const created = await join(alice, room, "alice[zim]");
    const codes = (created.getChild("x", "http://jabber.org/protocol/muc#user")?.children ?? []).flatMap((c) =>
      typeof c === "string" ? [] : [c.attrs.code],
    );
    assert.ok(codes.includes("201"), `a new room answers 201 (created), got ${codes.join(",")}`);
    // The instant-room form: until it is submitted, others get item-not-found.
    await alice.iqCaller.request(
      xml(
        "iq",
        { type: "set", to: room },
        xml(
          "query",
          { xmlns: "http://jabber.org/protocol/muc#owner" },
          xml("x", { xmlns: "jabber:x:data", type: "submit" }),
        ),
      ),
    );
    await join(bob, room, "bob");
    const heard = stanza(
      bob,
      (s) => s.is("message") && s.attrs.type === "groupchat" && s.getChildText("body") === "hello room",
    );
    await alice.send(xml("message", { to: room, type: "groupchat" }, xml("body", {}, "hello room")));
    assert.equal((await heard).attrs.from, `${room}/alice[zim]`);
  });

  it("a component (XEP-0114) receives a user's message to a puppet and answers as it", async () => {
    const bridge = xmppComponent({
      service: `xmpp://127.0.0.1:${server.componentPort}`,
      domain: component.name,
      password: component.secret,
    });
    bridge.on("error", () => {});
    entities.push(bridge);
    await bridge.start();
    const alice = entities[0]!;
    const puppet = `carol@${component.name}`;
    const received = stanza(bridge, (s) => s.is("message") && s.getChildText("body") === "hi carol");
    await alice.send(xml("message", { to: puppet, type: "chat" }, xml("body", {}, "hi carol")));
    const message = await received;
    assert.equal(message.attrs.to, puppet);
    assert.match(message.attrs.from ?? "", /^alice@example\.test\//);
    const answered = stanza(alice, (s) => s.is("message") && s.getChildText("body") === "hi alice");
    await bridge.send(
      xml("message", { from: puppet, to: message.attrs.from, type: "chat" }, xml("body", {}, "hi alice")),
    );
    assert.equal((await answered).attrs.from, puppet);
  });

  it("comes back on the same ports after a crash, with its accounts, and clients reconnect", async () => {
    const { c2sPort, componentPort, pid } = server;
    const alice = entities[0]!;
    await server.kill();
    assert.equal(processExists(pid), false);
    await server.restart();
    assert.deepEqual([server.c2sPort, server.componentPort], [c2sPort, componentPort]);
    // @xmpp/client's reconnect module retries every second.
    await waitFor(alice, "online", () => true, 15_000);
    await server.register("dave", "dave-pw");
    const dave = await login("dave");
    const heard = stanza(dave, (s) => s.is("message") && s.getChildText("body") === "after the crash");
    await alice.send(xml("message", { to: `dave@${server.domain}`, type: "chat" }, xml("body", {}, "after the crash")));
    await heard;
  });

  it("stop leaves no process and no directory behind; restart() after it starts afresh", async () => {
    await Promise.allSettled(entities.splice(0).map((e) => e.stop()));
    const { pid, dir } = server;
    await server.stop();
    assert.equal(processExists(pid), false);
    assert.deepEqual(processesMentioning(dir), []);
    assert.equal(existsSync(dir), false);

    // restart() after stop() starts afresh on the same ports with every account registered so far.
    await server.restart();
    const dave = await login("dave");
    await Promise.allSettled(entities.splice(0).map((e) => e.stop()));
    assert.equal(dave.jid?.toString(), `dave@${server.domain}/test`);
    await server.stop();
    assert.equal(existsSync(dir), false);
  });
});

describe(
  "a test process that ends without stop()",
  { skip: chatServerSkip(ngircdAvailable()) ?? chatServerSkip(prosodyAvailable()) },
  () => {
    for (const ending of ["process.exit(0)", "an uncaught exception", "SIGTERM"]) {
      it(`leaves no server and no directory behind: ${ending}`, async () => {
        const entry = new URL("../src/chat-servers/index.js", import.meta.url).href;
        const end = {
          "process.exit(0)": "process.exit(0);",
          "an uncaught exception": "throw new Error('test ended badly');",
          SIGTERM: "process.kill(process.pid, 'SIGTERM'); setTimeout(() => {}, 10_000);",
        }[ending];
        const script = `
          const { startNgircd, startProsody } = await import(${JSON.stringify(entry)});
          const irc = await startNgircd();
          const xmpp = await startProsody();
          console.log(JSON.stringify({ pids: [irc.pid, xmpp.pid], dirs: [irc.dir, xmpp.dir] }));
          ${end}`;
        const child = spawn(process.execPath, ["--input-type=module", "-e", script], {
          stdio: ["ignore", "pipe", "pipe"],
        });
        let stdout = "";
        let stderr = "";
        child.stdout.on("data", (chunk: Buffer) => (stdout += chunk.toString()));
        child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
        await new Promise((resolve) => child.once("exit", resolve));
        const line = stdout.split("\n").find((l) => l.startsWith("{"));
        assert.ok(line, `the script printed nothing:\n${stderr}`);
        const { pids, dirs } = JSON.parse(line) as { pids: number[]; dirs: string[] };
        for (const pid of pids) assert.ok(await gone(pid), `server ${pid} still runs`);
        for (const dir of dirs) {
          assert.equal(existsSync(dir), false, `${dir} is left`);
          assert.deepEqual(processesMentioning(dir), []);
        }
      });
    }
  },
);
