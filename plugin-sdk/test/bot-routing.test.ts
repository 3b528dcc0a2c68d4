import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import {
  Bot,
  Composer,
  MemorySessionStorage,
  SqliteSessionStorage,
  session,
  type Context,
  type SessionFlavor,
} from "../src/bot/index.js";
import { MemoryLogger, testHomeserver, type TestHomeserver, type TestUser } from "@zimchat/testing";

type CounterContext = Context & SessionFlavor<{ count: number }>;

describe("bot routing through real messages", () => {
  let hs: TestHomeserver;
  let alice: TestUser;
  let bob: TestUser;
  before(async () => {
    hs = await testHomeserver();
    alice = await hs.user("alice");
    bob = await hs.user("bob");
  });
  after(async () => hs?.close());

  it("commands with arguments, hears, on, middleware in order, and a generated /help", async () => {
    const seen: string[] = [];
    const logger = new MemoryLogger();
    const bot = await hs.bot(
      (options) => {
        const b = new Bot({ ...options, description: "A test bot." });
        b.use(async (ctx, next) => {
          seen.push(`first:${ctx.update.type}`);
          await next();
          seen.push("first:after");
        });
        b.use(async (_ctx, next) => {
          seen.push("second");
          await next();
        });
        b.command("add", "adds numbers: /add 1 2 3", (ctx) =>
          ctx.reply(`${ctx.args.map(Number).reduce((a, n) => a + n, 0)} (${ctx.match})`),
        );
        b.command(["shout", "yell"], (ctx) => ctx.reply(ctx.match.toUpperCase()));
        b.hears(/^good (morning|night)\b/i, (ctx) => ctx.reply(`and a good ${ctx.match[1]} to you`));
        b.hears("ping", (ctx) => ctx.reply("pong"));
        b.on("text", (ctx) => ctx.reply(`text: ${ctx.message.text}`));
        return b;
      },
      { username: "routebot", logger },
    );
    await alice.send("routebot", "/add 1 2 39");
    assert.equal((await alice.nextMessage()).text, "42 (1 2 39)");
    assert.deepEqual(seen, ["first:message", "second", "first:after"], "middleware ran in order, around the handler");
    await alice.send("routebot", "/yell@routebot quiet please");
    assert.equal((await alice.nextMessage()).text, "QUIET PLEASE");
    await alice.send("routebot", "/add@otherbot 1 2");
    assert.equal(
      (await alice.nextMessage()).text,
      "text: /add@otherbot 1 2",
      "a command for another bot is plain text",
    );
    await alice.send("routebot", "Good Morning, bot");
    assert.equal((await alice.nextMessage()).text, "and a good Morning to you");
    await alice.send("routebot", "ping");
    assert.equal((await alice.nextMessage()).text, "pong");
    await alice.send("routebot", "/help");
    const help = (await alice.nextMessage()).text;
    assert.equal(help, "A test bot.\n\nCommands:\n/add - adds numbers: /add 1 2 3\n/shout\n/yell\n/help - this list");
    assert.equal(bot.helpText(), help);
    const logged = logger.text();
    for (const secret of ["1 2 39", "quiet", "Good Morning"])
      assert.equal(logged.includes(secret), false, `the log never carries message text (${secret})`);
  });

  it("a throwing handler reaches bot.catch with its context, and the bot keeps answering", async () => {
    const caught: { message: string; type: string; from: string | undefined }[] = [];
    await hs.bot(
      (options) => {
        const b = new Bot(options);
        b.command("boom", () => {
          throw new Error("kaboom");
        });
        b.command("next_twice", async (_ctx, next) => {
          await next();
          await next();
        });
        b.on("message", (ctx) => ctx.reply("still here"));
        b.catch(
          (error) =>
            void caught.push({
              message: (error.error as Error).message,
              type: error.ctx.update.type,
              from: error.ctx.from,
            }),
        );
        return b;
      },
      { username: "fragilebot" },
    );
    await alice.send("fragilebot", "/boom");
    await alice.send("fragilebot", "hello?");
    assert.equal((await alice.nextMessage()).text, "still here");
    assert.deepEqual(caught, [{ message: "kaboom", type: "message", from: alice.uuid }]);
    await alice.send("fragilebot", "/next_twice");
    assert.equal((await alice.nextMessage()).text, "still here", "the first next() ran the rest of the chain");
    const deadline = Date.now() + 5_000;
    while (caught.length < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    assert.match(caught[1]?.message ?? "", /next\(\) called more than once/);
  });

  it("the default error boundary logs the failure (no message text) and the bot goes on", async () => {
    const logger = new MemoryLogger();
    await hs.bot(
      (options) => {
        const b = new Bot(options);
        b.command("fail", () => {
          throw new TypeError("broken handler");
        });
        b.command("ok", (ctx) => ctx.reply("fine"));
        return b;
      },
      { username: "loggingbot", logger },
    );
    await alice.send("loggingbot", "/fail secret words");
    await alice.send("loggingbot", "/ok");
    assert.equal((await alice.nextMessage()).text, "fine");
    const line = await logger.waitFor(/A handler failed/);
    assert.match(line.message, /A handler failed on a message update from [0-9a-f-]{36}: TypeError: broken handler/);
    assert.equal(line.message.includes("secret words"), false);
  });

  it("per-conversation sessions (memory), and a composer used as middleware", async () => {
    const storage = new MemorySessionStorage<{ count: number }>();
    const feature = new Composer<CounterContext>();
    feature.command("count", "counts your messages", (ctx) => ctx.reply(`you sent ${ctx.session.count} message(s)`));
    await hs.bot(
      (options) => {
        const b = new Bot<CounterContext>(options);
        b.use(session({ initial: () => ({ count: 0 }), storage }));
        b.use(async (ctx, next) => {
          if (ctx.message) ctx.session.count++;
          await next();
        });
        b.use(feature);
        b.command("reset", (ctx) => {
          ctx.session = null as unknown as { count: number };
          return ctx.reply("forgotten");
        });
        return b;
      },
      { username: "counterbot" },
    );
    await alice.send("counterbot", "one");
    await alice.send("counterbot", "two");
    await alice.send("counterbot", "/count");
    assert.equal((await alice.nextMessage()).text, "you sent 3 message(s)");
    await bob.send("counterbot", "/count");
    assert.equal((await bob.nextMessage()).text, "you sent 1 message(s)", "bob has his own session");
    assert.deepEqual(storage.read(alice.uuid), { count: 3 });
    await alice.send("counterbot", "/reset");
    assert.equal((await alice.nextMessage()).text, "forgotten");
    assert.equal(storage.read(alice.uuid), undefined, "setting the session to null deleted it");
    await alice.send("counterbot", "/help");
    assert.match(
      (await alice.nextMessage()).text,
      /\/count - counts your messages/,
      "commands of a used composer are in /help",
    );
  });

  it("SQLite sessions survive a restart of the bot; updates outside handlers take turns with them", async () => {
    const dir = hs.tempDir("sqlitebot");
    const make = (options: Parameters<Parameters<TestHomeserver["bot"]>[0]>[0]): Bot<CounterContext> => {
      const b = new Bot<CounterContext>({ ...options, dir });
      const storage = new SqliteSessionStorage<{ count: number }>(`${dir}/sessions.db`);
      const sessions = session<{ count: number }, CounterContext>({ initial: () => ({ count: 0 }), storage });
      b.use(sessions);
      b.command("inc", (ctx) => ctx.reply(String(++ctx.session.count)));
      b.command("bump", async (ctx) => {
        // Out of band (another conversation's session), as a timer would.
        const updated = await sessions.update("elsewhere", (s) => void (s.count += 10));
        return ctx.reply(`elsewhere ${updated?.count}`);
      });
      b.onStop(() => storage.close());
      return b;
    };
    const first = await hs.bot(make, { username: "sqlitebot" });
    await alice.send("sqlitebot", "/inc");
    assert.equal((await alice.nextMessage()).text, "1");
    await alice.send("sqlitebot", "/bump");
    assert.equal((await alice.nextMessage()).text, "elsewhere 10");
    await first.stop();
    await hs.bot(make, { dir });
    await alice.send("sqlitebot", "/inc");
    assert.equal((await alice.nextMessage()).text, "2", "the session came back from SQLite");
  });

  it("group messages: replies go to the group; attachments download and go back as files", async () => {
    await hs.bot(
      (options) => {
        const b = new Bot(options);
        b.on("group_update", (ctx) => ctx.reply(`hello ${ctx.groupUpdate.group.title}`));
        b.on("attachment", async (ctx) => {
          const bytes = await ctx.downloadAttachment();
          return ctx.replyWithFile(Buffer.from(bytes.toString("utf8").toUpperCase()), {
            fileName: `upper-${ctx.message.attachment.fileName}`,
            caption: `${bytes.length} bytes`,
          });
        });
        b.on("group_message", (ctx) => ctx.reply(`group heard: ${ctx.message.text}`));
        b.on("direct_message", (ctx) => ctx.reply(`direct: ${ctx.message.text}`));
        return b;
      },
      { username: "groupbot" },
    );
    const group = await alice.createGroup("Braai crew", ["bob", "groupbot"]);
    const conversation = `group:${group.id}`;
    assert.equal((await alice.nextMessage({ conversation })).text, "hello Braai crew");
    assert.equal((await bob.nextMessage({ conversation })).text, "hello Braai crew");
    await bob.send(conversation, "Saturday at six?");
    assert.equal((await alice.nextMessage({ conversation })).text, "Saturday at six?");
    const reply = await alice.nextMessage({ conversation });
    assert.equal(reply.text, "group heard: Saturday at six?");
    assert.equal(reply.group, group.id);
    assert.equal(reply.from, await alice.client.resolve("groupbot"));
    assert.equal((await bob.nextMessage({ conversation })).text, "group heard: Saturday at six?");

    await alice.sendFile("groupbot", Buffer.from("the minutes"), { fileName: "minutes.txt" });
    const file = await alice.nextMessage({ conversation: await alice.client.resolve("groupbot") });
    assert.equal(file.text, "11 bytes");
    assert.equal(file.attachment?.fileName, "upper-minutes.txt");
    assert.equal((await alice.client.downloadAttachment(file.attachment!)).toString("utf8"), "THE MINUTES");
    await alice.send("groupbot", "just text");
    assert.equal(
      (await alice.nextMessage({ conversation: await alice.client.resolve("groupbot") })).text,
      "direct: just text",
    );
  });
});
