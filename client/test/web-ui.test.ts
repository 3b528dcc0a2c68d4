/**
 * The web client end to end: two real `zimchat-chat web` daemons (alice and
 * bob, each its own profile) on one real homeserver child process, each driven
 * through its own page in a real headless Chromium (playwright-core with the
 * machine's /usr/bin/chromium, see @zimchat/testing/browser). Everything goes
 * through the UI as a person would use it: register, start a chat, read live,
 * send with the keyboard alone. The tests run in order and tell one story.
 * Screenshots of the main screens are written to an artefacts directory
 * (ZIMCHAT_TEST_ARTIFACTS, default .test-artifacts/web-ui/ at the repository root).
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { browserSkip, launchChromium, type Browser, type Page } from "@zimchat/testing/browser";
import { freePort, startHomeserver, type Homeserver } from "@zimchat/testing/spawn";
import { SqliteDeviceStore, ZimClient } from "../src/index.js";
import { cli, ok, only } from "./support/chat-cli.js";
import { startWebCli, type WebCli } from "./support/web-cli.js";

const root = fileURLToPath(new URL("../../../", import.meta.url));
const artifacts = join(process.env.ZIMCHAT_TEST_ARTIFACTS ?? join(root, ".test-artifacts"), "web-ui");

/** What a page logged that a test must never see: script errors and Content-Security-Policy violations. */
function watch(page: Page, problems: string[]): void {
  page.on("pageerror", (error) => problems.push(`page error: ${error.message}`));
  page.on("console", (message) => {
    if (/Content.Security.Policy|Refused to/i.test(message.text())) problems.push(`CSP: ${message.text()}`);
  });
}

describe("web client (zimchat-chat web in Chromium)", { skip: browserSkip() }, () => {
  let server: Homeserver;
  let browser: Browser;
  const dir = mkdtempSync(join(tmpdir(), "zimchat-web-ui-test-"));
  const daemons: Record<string, WebCli> = {};
  const pages: Record<string, Page> = {};
  const problems: string[] = [];

  const messageIn = (page: Page, text: string) => page.locator(".messages .message", { hasText: text });
  /** A conversation in the list by its title (not by its last message, which may name someone else). */
  const conversationButton = (page: Page, title: string) =>
    page.locator("button.conversation").filter({
      has: page.locator(".title", { hasText: new RegExp(`^${title.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}\\b`) }),
    });
  const connection = (page: Page, state: string) => page.locator(`.connection[data-state="${state}"]`);
  /** The id of the focused element (the tests have no DOM types: the expression runs in the page). */
  const focused = (page: Page): Promise<unknown> =>
    page.evaluate("document.activeElement && document.activeElement.id");
  const shot = (page: Page, name: string) => page.screenshot({ path: join(artifacts, `${name}.png`) });

  before(async () => {
    mkdirSync(artifacts, { recursive: true });
    server = await startHomeserver(["--port", String(await freePort())]);
    browser = await launchChromium();
    for (const name of ["alice", "bob"]) {
      daemons[name] = await startWebCli(join(dir, name));
      const page = await browser.newPage({ viewport: { width: 1000, height: 640 }, locale: "en-GB" });
      page.setDefaultTimeout(30_000);
      watch(page, problems);
      pages[name] = page;
    }
  });
  after(async () => {
    await browser?.close();
    for (const daemon of Object.values(daemons)) await daemon.stop();
    await server?.stop();
    rmSync(dir, { recursive: true, force: true });
    console.log(`web-ui: screenshots in ${artifacts}`);
  });

  it("registers alice and bob through the register form, after trading the link's token for a cookie", async () => {
    for (const name of ["alice", "bob"]) {
      const page = pages[name]!;
      await page.goto(daemons[name]!.url);
      await page.getByRole("heading", { name: "Welcome to ZimChat" }).waitFor();
      assert.equal(new URL(page.url()).hash, "", "the token is taken out of the address");
      await page.getByLabel("Homeserver URL").fill(server.url);
      await page.getByLabel("Username").fill(name);
      if (name === "alice") await shot(page, "register");
      await page.getByRole("button", { name: "Register" }).click();
      await connection(page, "online").waitFor();
      assert.equal(await page.locator(".account").textContent(), `${name} on ${server.url}`);
    }

    // A taken username is refused on the form, which says why and keeps what was typed.
    const carol = await startWebCli(join(dir, "carol"));
    try {
      const page = await browser.newPage();
      watch(page, problems);
      await page.goto(carol.url);
      await page.getByLabel("Homeserver URL").fill(server.url);
      await page.getByLabel("Username").fill("alice");
      await page.getByRole("button", { name: "Register" }).click();
      const alert = await page.getByRole("alert").textContent();
      assert.match(alert ?? "", /taken/i);
      assert.equal(await page.getByLabel("Username").inputValue(), "alice");
      await page.close();
    } finally {
      await carol.stop();
    }
  });

  it("chats both ways live: a new chat by username, unread counts, the live region, delivery status", async () => {
    const alice = pages.alice!;
    const bob = pages.bob!;
    await alice.getByLabel("New chat with (username)").fill("bob");
    await alice.getByRole("button", { name: "Start" }).click();
    const composer = alice.getByLabel("Message to bob");
    assert.equal(await focused(alice), "composer", "the composer has the focus");
    await composer.fill("Sawubona, bob! Lunch at one?");
    await composer.press("Enter");
    await messageIn(alice, "Sawubona, bob!").waitFor();

    // bob's list shows the new conversation with one unread message, and the live region announces it.
    const fromAlice = conversationButton(bob, "alice");
    await fromAlice.locator(".unread", { hasText: "1 unread" }).waitFor();
    assert.match((await fromAlice.locator(".last").textContent()) ?? "", /Sawubona, bob! Lunch at one\?/);
    await bob.locator('[aria-live="polite"]', { hasText: "New message from alice: Sawubona, bob!" }).waitFor({
      state: "attached",
    });
    await shot(bob, "conversation-list");

    await fromAlice.click();
    await messageIn(bob, "Sawubona, bob!").locator(".author", { hasText: "alice" }).waitFor();
    await fromAlice.locator(".unread").waitFor({ state: "detached" });
    await bob.getByLabel("Message to alice").fill("Yebo! See you at one.");
    await bob.getByLabel("Message to alice").press("Enter");

    // alice has the conversation open: the reply appears live, and her message shows it was delivered.
    await messageIn(alice, "Yebo! See you at one.").locator(".author", { hasText: "bob" }).waitFor();
    await alice.locator('.message.outgoing[data-status="delivered"]', { hasText: "Sawubona, bob!" }).waitFor();
    assert.equal(await conversationButton(alice, "bob").locator(".unread").count(), 0, "an open conversation is read");
    await shot(alice, "conversation");
  });

  it("works with the keyboard alone: Tab to the conversation, Enter opens it, Enter sends", async () => {
    const bob = pages.bob!;
    await bob.reload();
    await connection(bob, "online").waitFor();
    await bob.keyboard.press("Tab");
    assert.equal(await focused(bob), "new-chat", "the first stop is the new-chat field");
    let onConversation = false;
    for (let i = 0; i < 5 && !onConversation; i++) {
      await bob.keyboard.press("Tab");
      onConversation = (await bob.locator("button.conversation:focus", { hasText: "alice" }).count()) === 1;
    }
    assert.ok(onConversation, "Tab reaches alice's conversation");
    await bob.keyboard.press("Enter");
    await messageIn(bob, "Yebo!").waitFor();
    assert.equal(await focused(bob), "composer", "opening moves the focus to the composer");
    await bob.keyboard.type("Typed without a mouse.");
    await bob.keyboard.press("Enter");
    await messageIn(pages.alice!, "Typed without a mouse.").waitFor();
    assert.equal(await bob.getByLabel("Message to alice").inputValue(), "", "the composer is empty again");
  });

  it("bob's daemon stopped while alice sends: the page says so, and the message arrives once bob is back", async () => {
    const alice = pages.alice!;
    const bob = pages.bob!;
    assert.equal(await daemons.bob!.stop(), 0);
    await connection(bob, "daemon-lost").waitFor();

    await alice.getByLabel("Message to bob").fill("Are you there, bob?");
    await alice.getByLabel("Message to bob").press("Enter");
    await alice.locator('.message.outgoing[data-status="sent"]', { hasText: "Are you there, bob?" }).waitFor();

    // Back on the same port, with a new link: the old page learns its session ended, the new link opens it again.
    daemons.bob = await startWebCli(join(dir, "bob"), ["--port", String(daemons.bob!.port)]);
    await bob.getByRole("alert").filter({ hasText: "session has ended" }).waitFor();
    await bob.goto(daemons.bob.url);
    const fromAlice = conversationButton(bob, "alice");
    await fromAlice.locator(".unread", { hasText: "1 unread" }).waitFor();
    assert.match((await fromAlice.locator(".last").textContent()) ?? "", /Are you there, bob\?/);
    await fromAlice.click();
    await messageIn(bob, "Are you there, bob?").waitFor();
    await alice.locator('.message.outgoing[data-status="delivered"]', { hasText: "Are you there, bob?" }).waitFor();
  });

  it("a message typed while the homeserver is down shows queued, then sent once it is back", async () => {
    const alice = pages.alice!;
    await server.restart(async () => {
      await connection(alice, "offline").waitFor();
      await alice.getByLabel("Message to bob").fill("Typed while the server was down");
      await alice.getByLabel("Message to bob").press("Enter");
      await alice
        .locator('.message.outgoing[data-status="queued"]', { hasText: "Typed while the server was down" })
        .waitFor();
      await shot(alice, "offline-queued");
    });
    await connection(alice, "online").waitFor();
    await alice
      .locator('.message.outgoing:is([data-status="sent"], [data-status="delivered"])', {
        hasText: "Typed while the server was down",
      })
      .waitFor();
    await messageIn(pages.bob!, "Typed while the server was down").waitFor();
    // Shown once on each side, also after a reload (the daemon's history), and delivered in the end.
    await alice
      .locator('.message.outgoing[data-status="delivered"]', { hasText: "Typed while the server was down" })
      .waitFor();
    assert.equal(await messageIn(alice, "Typed while the server was down").count(), 1);
    assert.equal(await messageIn(pages.bob!, "Typed while the server was down").count(), 1);
    await alice.reload();
    await conversationButton(alice, "bob").click();
    await messageIn(alice, "Typed while the server was down").waitFor();
    assert.equal(await messageIn(alice, "Typed while the server was down").count(), 1);
  });

  it("shows the same safety number on both pages, and verifies bob with the digits from his screen", async () => {
    const alice = pages.alice!;
    const bob = pages.bob!;
    await alice.getByRole("button", { name: "Safety number" }).click();
    await bob.getByRole("button", { name: "Safety number" }).click();
    const digits = async (page: Page): Promise<string> =>
      (await page.locator(".safety-panel .digits").textContent()) ?? "";
    await alice.locator(".safety-panel .digits").waitFor();
    await bob.locator(".safety-panel .digits").waitFor();
    assert.match(await digits(alice), /^(\d{5} ){11}\d{5}$/);
    assert.equal(await digits(alice), await digits(bob), "both screens show one number");
    await alice.locator('.safety-panel img.qr[src^="data:image/svg+xml"]').waitFor();
    assert.equal(await alice.getByText("bob is not verified yet.").count(), 1);

    await alice.getByLabel("Their number").fill("12345 ".repeat(12).trim());
    await alice.getByRole("button", { name: "Mark as verified" }).click();
    assert.match(
      (await alice.locator(".safety-panel").getByRole("alert").textContent()) ?? "",
      /not your safety number/,
    );
    await alice.getByLabel("Their number").fill(await digits(bob));
    await alice.getByRole("button", { name: "Mark as verified" }).click();
    await alice.getByText("bob is verified.").waitFor();
    await shot(alice, "safety-number");
    await alice.getByRole("button", { name: /Safety number/ }).click();
    await bob.getByRole("button", { name: /Safety number/ }).click();
  });

  it("creates a group from the page; its messages reach the other member live", async () => {
    const alice = pages.alice!;
    const bob = pages.bob!;
    await alice.getByRole("button", { name: "New group" }).click();
    await alice.getByLabel("Group name").fill("Lunch crew");
    await alice.getByLabel("Members").fill("bob");
    await alice.getByRole("button", { name: "Create group" }).click();
    await alice.locator("#conversation-title", { hasText: "Lunch crew" }).waitFor();
    assert.equal(await alice.getByRole("button", { name: "Safety number" }).count(), 0, "a group has no safety number");
    await alice.getByLabel("Message to Lunch crew").fill("Who is in for Friday?");
    await alice.getByLabel("Message to Lunch crew").press("Enter");

    const group = conversationButton(bob, "Lunch crew");
    await group.locator(".unread", { hasText: "1 unread" }).waitFor();
    await bob
      .locator('[aria-live="polite"]', { hasText: "New message from alice in Lunch crew: Who is in for Friday?" })
      .waitFor({ state: "attached" });
    await group.click();
    await messageIn(bob, "Who is in for Friday?").locator(".author", { hasText: "alice" }).waitFor();
  });

  it("manages a group of three: members with admin marks, alice adds and removes carol, bob leaves", async () => {
    const alice = pages.alice!;
    const bob = pages.bob!;
    daemons.carol = await startWebCli(join(dir, "carol-member"));
    const carol = await browser.newPage({ viewport: { width: 1000, height: 640 }, locale: "en-GB" });
    carol.setDefaultTimeout(30_000);
    watch(carol, problems);
    pages.carol = carol;
    await carol.goto(daemons.carol.url);
    await carol.getByLabel("Homeserver URL", { exact: true }).fill(server.url);
    await carol.getByLabel("Username").fill("carol");
    await carol.getByRole("button", { name: "Register" }).click();
    await connection(carol, "online").waitFor();

    // alice (the admin) opens the group's info: members with admin marks; she adds carol by username.
    await alice.getByRole("button", { name: "Group info" }).click();
    const aliceMembers = alice.locator("#group-panel .member");
    await aliceMembers.first().waitFor();
    const listed = await aliceMembers.allInnerTexts();
    assert.equal(listed.length, 2, listed.join(" | "));
    assert.match(listed[0]!, /^alice \(you\)\s*admin$/);
    assert.match(listed[1]!, /^bob\s*Remove$/);
    await alice.getByLabel("Add a member (username)").fill("carol");
    await alice.getByRole("button", { name: "Add", exact: true }).click();
    await alice.locator("#group-panel [role=status]", { hasText: "Added carol." }).waitFor();
    await alice.locator("#group-panel .member", { hasText: "carol" }).waitFor();
    assert.equal(await alice.locator("#group-panel-heading").textContent(), "Members (3)");
    await shot(alice, "group-info");

    // All three chat.
    await conversationButton(carol, "Lunch crew").click();
    await carol.getByLabel("Message to Lunch crew").fill("Carol here, count me in");
    await carol.getByLabel("Message to Lunch crew").press("Enter");
    await messageIn(alice, "Carol here, count me in").locator(".author", { hasText: "carol" }).waitFor();
    await conversationButton(bob, "Lunch crew").click();
    await messageIn(bob, "Carol here, count me in").waitFor();

    // bob is no admin: he sees the members but no add or remove controls.
    await bob.getByRole("button", { name: "Group info" }).click();
    await bob.getByText("Only an admin can add or remove members.").waitFor();
    assert.equal(await bob.getByLabel("Add a member (username)").count(), 0);
    assert.equal(await bob.getByRole("button", { name: /^Remove / }).count(), 0);

    // alice removes carol: bob gets what follows, carol does not, and her page says she is no longer a member.
    await alice.getByRole("button", { name: "Remove carol from Lunch crew" }).click();
    await alice.locator("#group-panel [role=status]", { hasText: "Removed carol" }).waitFor();
    await alice.getByLabel("Message to Lunch crew").fill("Just bob and me now");
    await alice.getByLabel("Message to Lunch crew").press("Enter");
    await messageIn(bob, "Just bob and me now").waitFor();
    await carol.getByRole("button", { name: "Group info" }).click();
    await carol.getByText("You are no longer a member of this group.").waitFor();
    await new Promise((resolve) => setTimeout(resolve, 1000));
    assert.equal(await messageIn(carol, "Just bob and me now").count(), 0, "a removed member reads no more");

    // bob leaves (after confirming); alice's open panel shows him gone.
    await bob.getByRole("button", { name: "Leave group" }).click();
    await bob.getByRole("button", { name: "Leave", exact: true }).click();
    await bob.locator("#group-panel [role=status]", { hasText: "You left Lunch crew." }).waitFor();
    await bob.getByText("You are no longer a member of this group.").waitFor();
    await alice.locator("#group-panel-heading", { hasText: "Members (1)" }).waitFor();
    // The only admin cannot leave: the page says why.
    await alice.getByRole("button", { name: "Leave group" }).click();
    await alice.getByRole("button", { name: "Leave", exact: true }).click();
    await alice.locator("#group-panel [role=alert]", { hasText: "only member" }).waitFor();
    await alice.getByRole("button", { name: "Group info" }).click();
  });

  it("links a new device to alice's account: it shows a code and QR, alice approves it from her page", async () => {
    const alice = pages.alice!;
    daemons.laptop = await startWebCli(join(dir, "alice-laptop"));
    const laptop = await browser.newPage({ viewport: { width: 1000, height: 640 }, locale: "en-GB" });
    laptop.setDefaultTimeout(30_000);
    watch(laptop, problems);
    pages.laptop = laptop;
    await laptop.goto(daemons.laptop.url);
    await laptop.getByRole("button", { name: "Link to an existing account" }).click();
    await laptop.getByLabel("Homeserver URL of your account").fill(server.url);
    await laptop.getByRole("button", { name: "Show a link code" }).click();
    await laptop.locator('img.qr[src^="data:image/svg+xml"][alt="QR code of the link code"]').waitFor();
    const uri = await laptop.getByLabel("Link code").inputValue();
    assert.match(uri, /^zimchat-link:\?server=/);
    await shot(laptop, "link-code");

    await alice.getByRole("button", { name: "Link another device" }).click();
    await alice.getByLabel("Link code").fill(uri);
    await alice.getByRole("button", { name: "Approve" }).click();
    await alice.locator(".link-another [role=status]", { hasText: "Approved" }).waitFor();
    await alice.getByRole("button", { name: "Link another device" }).click();

    // The new device's page turns into alice's chat once the daemon is linked.
    await connection(laptop, "online").waitFor();
    assert.equal(await laptop.locator(".account").textContent(), `alice on ${server.url}`);
    assert.equal(
      await laptop.getByRole("button", { name: "Link another device" }).count(),
      0,
      "only the primary approves devices",
    );
  });

  it("bob's new key: alice's page warns, her composer is blocked, and she can send again after accepting", async () => {
    const alice = pages.alice!;
    const bob = pages.bob!;
    // alice verified bob (above). bob reinstalls: a new identity key on the same account.
    assert.equal(await daemons.bob!.stop(), 0);
    const reinstalled = new ZimClient({ store: new SqliteDeviceStore(join(dir, "bob", "device.db")) });
    await reinstalled.resetIdentity();
    await reinstalled.close();
    daemons.bob = await startWebCli(join(dir, "bob"), ["--port", String(daemons.bob!.port)]);
    await bob.goto(daemons.bob.url);
    await conversationButton(bob, "alice").click();
    await bob.getByLabel("Message to alice").fill("New phone, same bob");
    await bob.getByLabel("Message to alice").press("Enter");

    await conversationButton(alice, "bob").locator(".key-changed").waitFor();
    await conversationButton(alice, "bob").click();
    await messageIn(alice, "New phone, same bob").waitFor();
    const warning = alice.locator(".key-change[role=alert]");
    await warning.waitFor();
    assert.match((await warning.textContent()) ?? "", /bob's safety number has changed/);
    const composer = alice.getByLabel("Message to bob");
    assert.equal(await composer.isDisabled(), true, "the composer is blocked");
    assert.equal(await alice.getByRole("button", { name: "Send", exact: true }).isDisabled(), true);
    assert.equal(await alice.getByLabel("Send a file").isDisabled(), true);
    assert.match((await alice.locator("#composer-blocked").textContent()) ?? "", /blocked/);
    await shot(alice, "key-changed");
    // The banner's link opens the safety number, which says it changed.
    await alice.getByRole("button", { name: "Compare safety numbers" }).click();
    await alice.getByText("bob's safety number has changed: compare the new number").waitFor();
    await alice.getByRole("button", { name: /Safety number/ }).click();

    await alice.getByRole("button", { name: "Accept the new safety number" }).click();
    await warning.waitFor({ state: "detached" });
    assert.equal(await composer.isDisabled(), false);
    await composer.fill("Welcome back, bob");
    await composer.press("Enter");
    await messageIn(bob, "Welcome back, bob").waitFor();
  });

  it("sends a file with upload progress; bob downloads it with progress: the same bytes", async () => {
    const alice = pages.alice!;
    const bob = pages.bob!;
    const bytes = randomBytes(3_000_000);
    await alice
      .getByLabel("Send a file")
      .setInputFiles({ name: "braai-photos.zip", mimeType: "application/zip", buffer: bytes });
    await alice.locator('progress.upload-progress[data-percent="100"]').waitFor();
    await alice.getByText("Sent braai-photos.zip").waitFor();
    await messageIn(alice, "braai-photos.zip").waitFor();

    const received = messageIn(bob, "braai-photos.zip");
    await received.waitFor();
    assert.match((await received.textContent()) ?? "", /2\.9 MB/);
    const downloading = bob.waitForEvent("download");
    await received.getByRole("button", { name: "Download braai-photos.zip" }).click();
    const download = await downloading;
    assert.equal(download.suggestedFilename(), "braai-photos.zip");
    assert.ok(readFileSync(await download.path()).equals(bytes), "the same bytes");
    await received.locator('progress.download-progress[data-percent="100"]').waitFor();
    await received.locator("progress.download-progress").scrollIntoViewIfNeeded();
    await shot(bob, "file");
  });

  it("shows a bridged group's disclosure as a permanent banner, and marks it in the list", async () => {
    const alice = pages.alice!;
    const as = (name: string, ...args: string[]): string[] => [...args, "--profile", join(dir, name)];
    for (const name of ["dave", "ircbot"])
      ok(await cli(as(name, "register", "--server", server.url, "--username", name, "--json")));
    const [created] = only(
      ok(await cli(as("dave", "group", "create", "Chess club", "alice", "--json"))),
      "groupChanged",
    );
    assert.ok(created);
    const group = conversationButton(alice, "Chess club");
    await group.waitFor();
    ok(await cli(as("dave", "group", "bridge", "Chess club", "ircbot", "irc", "#chess", "--json")));
    await group.locator(".bridged").waitFor();
    await group.click();
    const banner = alice.getByRole("note");
    await banner.waitFor();
    assert.match(
      (await banner.textContent()) ?? "",
      /^Bridged: messages in this group are decrypted by (ircbot|[0-9a-f-]{36}) and sent in plaintext to IRC #chess\. Attachments are not bridged\.$/,
    );
    await shot(alice, "bridged-group");
  });

  it("logged no script error and no Content-Security-Policy violation", () => {
    assert.deepEqual(problems, []);
  });
});
