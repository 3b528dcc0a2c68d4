/**
 * The Docker image and the compose example.
 *
 * The compose file, the nginx config and the Dockerfile's contract are read
 * on every run. The image itself is built from the real Dockerfile with
 * `buildah bud --isolation chroot` on locally made stand-in base images
 * (scripts/docker-stand-in-base.sh: no image registry is reachable), started
 * with its own ENTRYPOINT, and checked through its HEALTHCHECK, /healthz and a
 * register/send/receive round trip with the real client SDK. That part needs
 * root, buildah and debootstrap, and runs in the SQLite pass of the suite only.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { parse } from "yaml";
import { SqliteDeviceStore, ZimClient, type MessageEvent } from "@zimchat/client";
import { freePort } from "@zimchat/testing/spawn";

const root = fileURLToPath(new URL("../../../", import.meta.url));
const minutes = 60_000;

interface ComposeService {
  image?: string;
  build?: unknown;
  profiles?: string[];
  environment?: Record<string, string>;
  volumes?: string[];
  ports?: string[];
  depends_on?: Record<string, unknown>;
  ulimits?: { nofile?: { soft?: number; hard?: number } | number };
}

describe("examples/docker-compose.yml", () => {
  const compose = parse(readFileSync(join(root, "examples/docker-compose.yml"), "utf8"), { merge: true }) as {
    services: Record<string, ComposeService>;
    volumes: Record<string, unknown>;
  };
  const inProfile = (profile: string): [string, ComposeService][] =>
    Object.entries(compose.services).filter(([, s]) => s.profiles?.includes(profile));
  const homeservers = (profile: string): [string, ComposeService][] =>
    inProfile(profile).filter(([, s]) => s.image === "zimchat:latest");

  it("profile single: one homeserver on SQLite with /data in a named volume", () => {
    const nodes = homeservers("single");
    assert.equal(inProfile("single").length, 1);
    assert.equal(nodes.length, 1);
    const [, node] = nodes[0]!;
    assert.ok(node.build, "the image can be built by compose");
    assert.equal(node.environment?.DATABASE_URL, undefined, "SQLite in the data dir");
    const volume = node.volumes?.find((v) => v.endsWith(":/data"))?.split(":")[0];
    assert.ok(volume && volume in compose.volumes, "named volume on /data");
  });

  it("every homeserver gets a descriptor limit of at least 65536 (ulimits: the image cannot set it)", () => {
    for (const [name, node] of [...homeservers("single"), ...homeservers("cluster")]) {
      const nofile = node.ulimits?.nofile;
      const soft = typeof nofile === "number" ? nofile : nofile?.soft;
      assert.ok((soft ?? 0) >= 65536, `${name} ulimits.nofile`);
    }
  });

  it("profile cluster: PostgreSQL, Redis, two or more nodes sharing /data, a WebSocket-capable proxy", () => {
    const services = Object.fromEntries(inProfile("cluster"));
    assert.match(services.postgres?.image ?? "", /^postgres:/);
    assert.match(services.redis?.image ?? "", /^redis:/);
    const nodes = homeservers("cluster");
    assert.ok(nodes.length >= 2, `${nodes.length} nodes`);
    const volumes = new Set(nodes.map(([, s]) => s.volumes?.find((v) => v.endsWith(":/data"))));
    assert.equal(volumes.size, 1, "all nodes share one /data volume");
    for (const [name, node] of nodes) {
      const env = node.environment ?? {};
      assert.match(env.DATABASE_URL ?? "", /^postgresql:\/\/[^@]+@postgres:5432\//, `${name} DATABASE_URL`);
      assert.match(env.REDIS_URL ?? "", /^redis:\/\/redis:6379/, `${name} REDIS_URL`);
      assert.ok(env.ZIMCHAT_REDIS_PREFIX, `${name} ZIMCHAT_REDIS_PREFIX`);
      assert.match(env.ZIMCHAT_ATTACHMENTS_DIR ?? "", /^\/data\//, `${name} attachments on the shared volume`);
      assert.equal(env.ZIMCHAT_TRUST_PROXY, "1", `${name} trusts the one proxy in front of it`);
      assert.ok(env.ZIMCHAT_ADMIN_TOKEN, `${name} ZIMCHAT_ADMIN_TOKEN`);
      assert.deepEqual(
        Object.keys(node.depends_on ?? {})
          .filter((d) => d === "postgres" || d === "redis")
          .sort(),
        ["postgres", "redis"],
      );
      assert.equal(node.ports, undefined, `${name} is reached through the proxy only`);
    }
    const proxy = services.proxy;
    assert.match(proxy?.image ?? "", /^nginx:/);
    assert.ok(proxy?.ports?.length, "the proxy publishes a port");
    const mount = proxy?.volumes?.[0]?.split(":")[0] ?? "";
    const nginx = readFileSync(join(root, "examples", mount), "utf8");
    for (const [name] of nodes) assert.match(nginx, new RegExp(`server ${name}:8080;`), `${name} is an upstream`);
    assert.match(nginx, /proxy_set_header Upgrade \$http_upgrade;/);
    assert.match(nginx, /proxy_set_header Connection \$connection_upgrade;/);
    assert.match(nginx, /proxy_http_version 1\.1;/);
  });

  it("profile bridge: an IRC bridge bot from the same image, its config mounted, beside profile single", () => {
    const bridges = inProfile("bridge");
    assert.equal(bridges.length, 1);
    const [, bridge] = bridges[0]! as [string, ComposeService & { entrypoint?: string[]; command?: string[] }];
    assert.equal(bridge.image, "zimchat:latest");
    assert.deepEqual(bridge.entrypoint, ["zimchat-bridge"]);
    const config = bridge.command?.[bridge.command.indexOf("--config") + 1];
    const mount = bridge.volumes?.find((v) => v.split(":")[1] === config);
    assert.ok(mount, "the config file is mounted where --config points");
    readFileSync(join(root, "examples", mount.split(":")[0]!), "utf8");
    const volume = bridge.volumes?.find((v) => v.endsWith(":/data"))?.split(":")[0];
    assert.ok(volume && volume in compose.volumes, "the bot's directory is in a named volume");
    assert.ok(bridge.depends_on && "zimchat" in bridge.depends_on, "starts after the homeserver");
  });
});

describe("Dockerfile", () => {
  const dockerfile = readFileSync(join(root, "Dockerfile"), "utf8");
  const froms = [...dockerfile.matchAll(/^FROM\s+(\S+)/gm)].map((m) => m[1]!);

  it("both stages run on one Node line, the current LTS unless --build-arg NODE_VERSION says otherwise", () => {
    assert.equal(/^ARG NODE_VERSION=(\S+)$/m.exec(dockerfile)?.[1], "24");
    assert.ok(
      dockerfile.indexOf("ARG NODE_VERSION=") < dockerfile.indexOf("FROM "),
      "declared before the first FROM, so FROM lines can use it",
    );
    assert.deepEqual(froms, [
      "docker.io/library/node:${NODE_VERSION}-bookworm",
      "docker.io/library/node:${NODE_VERSION}-bookworm-slim",
    ]);
  });

  it("copies every workspace's package.json before npm ci", () => {
    const workspaces = (JSON.parse(readFileSync(join(root, "package.json"), "utf8")) as { workspaces: string[] })
      .workspaces;
    const beforeInstall = dockerfile.slice(0, dockerfile.indexOf("RUN npm ci"));
    for (const w of workspaces) assert.match(beforeInstall, new RegExp(`^COPY ${w}/package\\.json ${w}/$`, "m"), w);
  });

  it("the stand-in base image script tags the names the FROM lines resolve to", () => {
    const script = readFileSync(join(root, "scripts/docker-stand-in-base.sh"), "utf8");
    const code = script.split("\n").filter((line) => !line.trimStart().startsWith("#"));
    assert.ok(!code.some((line) => /node:\d+-bookworm/.test(line)), "no hard-coded base image name");
    const resolve = (version: string): string[] => {
      const parse = script.slice(
        script.indexOf("# The base image names"),
        script.indexOf("\ndone\n", script.indexOf("# The base image names")) + 6,
      );
      const out = spawnSync("bash", ["-c", `set -euo pipefail\n${parse}\nprintf '%s\\n' "\${bases[@]}"`], {
        cwd: root,
        encoding: "utf8",
        env: { ...process.env, ZIMCHAT_IMAGE_NODE_VERSION: version },
      });
      assert.equal(out.status, 0, out.stderr);
      return out.stdout.trim().split("\n");
    };
    assert.deepEqual(resolve(""), ["docker.io/library/node:24-bookworm", "docker.io/library/node:24-bookworm-slim"]);
    assert.deepEqual(resolve("26"), ["docker.io/library/node:26-bookworm", "docker.io/library/node:26-bookworm-slim"]);
  });
});

/** The reason the image test cannot run here, or undefined. */
function skipReason(): string | undefined {
  if (process.env.ZIMCHAT_TEST_DATABASE_URL?.startsWith("postgres"))
    return "the image test runs once, in the SQLite pass of the suite";
  if (process.getuid?.() !== 0) return "building base images with debootstrap needs root";
  for (const tool of ["buildah", "debootstrap"]) {
    if (spawnSync("sh", ["-c", `command -v ${tool}`]).status !== 0)
      return `${tool} is not installed (apt-get install ${tool})`;
  }
  return undefined;
}

function run(command: string, args: string[], timeoutMs: number): string {
  const result = spawnSync(command, args, {
    cwd: root,
    encoding: "utf8",
    timeout: timeoutMs,
    maxBuffer: 64 * 1024 * 1024,
  });
  if (result.status !== 0)
    throw new Error(
      `${command} ${args.join(" ")} failed (${result.error?.message ?? result.status}):\n${(result.stdout + result.stderr).slice(-4000)}`,
    );
  return result.stdout.trim();
}

/** Every process below `pid`, from /proc. */
function descendants(pid: number): number[] {
  const children = readdirSync(`/proc/${pid}/task`).flatMap((task) => {
    try {
      return readFileSync(`/proc/${pid}/task/${task}/children`, "utf8").split(" ").filter(Boolean).map(Number);
    } catch {
      return [];
    }
  });
  return children.flatMap((child) => [child, ...descendants(child)]);
}

interface ImageConfig {
  User?: string;
  Env?: string[];
  Entrypoint?: string[];
  Cmd?: string[] | null;
  Volumes?: Record<string, unknown>;
  ExposedPorts?: Record<string, unknown>;
  Labels?: Record<string, string>;
  Healthcheck?: { Test?: string[] };
}

describe("Docker image built from the Dockerfile", { skip: skipReason() }, () => {
  const tag = `localhost/zimchat-test:${process.pid}`;
  const containerName = `zimchat-test-${process.pid}`;
  let config: ImageConfig;
  let container: string | undefined;
  let server: ChildProcess | undefined;
  const logs: string[] = [];
  let port = 0;
  let url = "";

  before(async () => {
    run("scripts/docker-stand-in-base.sh", [], 30 * minutes);
    // Docker format: OCI image configs have no HEALTHCHECK.
    run(
      "buildah",
      ["bud", "--isolation", "chroot", "--format", "docker", "--layers=false", "-f", "Dockerfile", "-t", tag, "."],
      40 * minutes,
    );
    config = (
      JSON.parse(run("buildah", ["inspect", "--type", "image", tag], minutes)) as { Docker: { config: ImageConfig } }
    ).Docker.config;
    container = run("buildah", ["from", "--name", containerName, tag], minutes);
    port = await freePort();
    url = `http://127.0.0.1:${port}`;
    // The image's own ENTRYPOINT (buildah run does not apply it) on the host network, as chroot isolation gives.
    server = spawn(
      "buildah",
      [
        "run",
        "--isolation",
        "chroot",
        "--env",
        `PORT=${port}`,
        "--env",
        "HOST=127.0.0.1",
        "--env",
        "ZIMCHAT_REGISTRATION=open",
        "--env",
        "ZIMCHAT_RATE_LIMITS=off",
        container,
        "--",
        ...(config.Entrypoint ?? []),
      ],
      {
        stdio: ["ignore", "pipe", "pipe"],
      },
    );
    for (const stream of [server.stdout!, server.stderr!])
      createInterface({ input: stream }).on("line", (line) => logs.push(line));
    const exited = new Promise<never>((_, reject) =>
      server!.once("exit", (code) => reject(new Error(`container exited with ${code}:\n${logs.join("\n")}`))),
    );
    const deadline = Date.now() + 2 * minutes;
    for (;;) {
      const ok = await Promise.race([
        fetch(`${url}/healthz`).then(
          (r) => r.ok,
          () => false,
        ),
        exited,
      ]);
      if (ok) break;
      if (Date.now() > deadline) throw new Error(`no /healthz after 2 minutes:\n${logs.join("\n")}`);
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
  });

  after(() => {
    if (server && server.exitCode === null) server.kill("SIGKILL");
    if (container) spawnSync("buildah", ["rm", container]);
    spawnSync("buildah", ["rmi", "--force", tag]);
  });

  it("runs `zimchat serve` as a non-root user with /data as a volume, port 8080 and the AGPL label", () => {
    assert.deepEqual(config.Entrypoint?.slice(-2), ["/app/server/bin/zimchat.js", "serve"]);
    assert.equal(config.Entrypoint?.[0], "node", "exec form: SIGTERM reaches node");
    assert.ok(config.User && config.User !== "root" && config.User !== "0", `user ${config.User}`);
    const uid = run(
      "buildah",
      ["run", "--isolation", "chroot", container!, "--", "node", "-p", "process.getuid()"],
      minutes,
    );
    assert.notEqual(uid, "0");
    assert.ok(config.Volumes && "/data" in config.Volumes);
    assert.ok(config.Env?.includes("ZIMCHAT_DATA_DIR=/data"));
    assert.ok(config.ExposedPorts && "8080/tcp" in config.ExposedPorts);
    assert.equal(config.Labels?.["org.opencontainers.image.licenses"], "AGPL-3.0-only");
  });

  it("keeps dev dependencies and tests out of the runtime image", () => {
    const probe =
      "const fs=require('fs');console.log(JSON.stringify(['/app/node_modules/typescript','/app/node_modules/prisma','/app/node_modules/supertest','/app/server/dist/test','/app/server/src'].filter(p=>fs.existsSync(p))))";
    assert.deepEqual(
      JSON.parse(run("buildah", ["run", "--isolation", "chroot", container!, "--", "node", "-e", probe], minutes)),
      [],
    );
  });

  it("carries the bridges: zimchat-bridge answers --help with both networks", () => {
    const help = run(
      "buildah",
      ["run", "--isolation", "chroot", container!, "--", "zimchat-bridge", "--help"],
      minutes,
    );
    assert.match(help, /^Usage: zimchat-bridge/m);
    assert.match(help, /^\s+irc \[options\]/m);
    assert.match(help, /^\s+xmpp \[options\]/m);
  });

  it("reports healthy through its HEALTHCHECK, and not when nothing listens", () => {
    const test = config.Healthcheck?.Test ?? [];
    assert.equal(test[0], "CMD", "exec form");
    const check = (p: number): number | null =>
      spawnSync("buildah", ["run", "--isolation", "chroot", "--env", `PORT=${p}`, container!, "--", ...test.slice(1)], {
        timeout: minutes,
      }).status;
    assert.equal(check(port), 0);
    assert.notEqual(check(port === 65535 ? 65534 : port + 1), 0);
  });

  it("serves /healthz and carries a message from Alice to Bob", async () => {
    const health = await fetch(`${url}/healthz`);
    assert.equal(health.status, 200);
    const stores = mkdtempSync(join(tmpdir(), "zimchat-image-devices-"));
    const register = (username: string): Promise<ZimClient> =>
      ZimClient.register({ serverUrl: url, username, store: new SqliteDeviceStore(join(stores, `${username}.db`)) });
    const alice = await register(`alice${process.pid}`);
    const bob = await register(`bob${process.pid}`);
    const received: MessageEvent[] = [];
    bob.on("message", (m) => received.push(m));
    await bob.connect();
    await alice.connect();
    await alice.sendText(bob.local.username, "hello from inside the image");
    const deadline = Date.now() + 30_000;
    while (!received.length && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
    assert.deepEqual(
      received.map((m) => m.text),
      ["hello from inside the image"],
    );
    await alice.close();
    await bob.close();
    // The SQLite database is in /data (ZIMCHAT_DATA_DIR), where the volume goes.
    const data = JSON.parse(
      run(
        "buildah",
        [
          "run",
          "--isolation",
          "chroot",
          container!,
          "--",
          "node",
          "-p",
          "JSON.stringify(require('fs').readdirSync('/data'))",
        ],
        minutes,
      ),
    ) as string[];
    assert.ok(data.includes("zimchat.db"), data.join(", "));
    // The admin CLI is on PATH and finds the same data dir (`docker exec <container> zimchat ...`).
    const invite = JSON.parse(
      run(
        "buildah",
        ["run", "--isolation", "chroot", container!, "--", "zimchat", "invite", "create", "--json"],
        minutes,
      )
        .split("\n")
        .at(-1)!,
    ) as { token?: string };
    assert.ok(invite.token, "an invite token");
  });

  it("shuts down gracefully when its process gets SIGTERM", async () => {
    // A container engine signals the entrypoint's process; with chroot isolation it is node itself,
    // a descendant of `buildah run` (which does not forward signals).
    const node = descendants(server!.pid!).find((pid) => readFileSync(`/proc/${pid}/comm`, "utf8").trim() === "node");
    assert.ok(node, "node runs as the entrypoint process");
    const exited = new Promise<number | null>((resolve) => server!.once("exit", resolve));
    process.kill(node, "SIGTERM");
    const code = await Promise.race([
      exited,
      new Promise<"timeout">((resolve) => setTimeout(resolve, 30_000, "timeout")),
    ]);
    assert.equal(code, 0, logs.slice(-20).join("\n"));
    assert.ok(logs.some((l) => l.includes('"msg":"shutting down"')));
  });
});
