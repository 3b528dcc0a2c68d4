/** Command-line options of `npm run bench`. */
import { parseArgs } from "node:util";

/** Everything one bench run is parameterised by. */
export interface BenchOptions {
  /** Print the JSON summary as the last stdout line. */
  json: boolean;
  /** Small N, short rounds (also fewer client-pipeline messages). */
  quick: boolean;
  /** Only the relay baseline (homeserver figures are null). */
  relayOnly: boolean;
  /** Only the client-pipeline row (its own homeserver child; nothing else is measured). */
  clientPipelineOnly: boolean;
  /** Connected devices per throughput/latency phase; the last is the headline. */
  ns: number[];
  /** Rounds per server per measurement, interleaved relay/homeserver. */
  rounds: number;
  /** `--rounds` was given (the client pipeline keeps its own default otherwise). */
  roundsGiven: boolean;
  /** Measured interval of one throughput round. */
  durationMs: number;
  /** Sending before each throughput round's interval. */
  warmupMs: number;
  /** Messages in flight per device (closed loop); undefined: about 4,000 in all. */
  window: number | undefined;
  /** Offered open-loop rate for latency. */
  rate: number;
  /** Length of one latency round (its first `warmupMs / 2` is not recorded). */
  latencyDurationMs: number;
  /** Connections for the idle-memory measurement (also the number of accounts registered). */
  idleConnections: number;
  /** Target size of the relay payload and of the Whisper ciphertext. */
  payloadBytes: number;
  /** Longest wait for other processes to go quiet before one round (0: never wait). */
  quietWaitMs: number;
  /** Longest total of those waits over the run. */
  quietBudgetMs: number;
  /** Keep the temporary data directory. */
  keepTmp: boolean;
  /** The homeserver's database in the throughput, latency and idle-memory rounds. */
  database: "sqlite" | "postgresql";
  /** With `database: "postgresql"`: the database in which the run makes (and drops) its own schema. */
  databaseUrl: string;
  /** CPU-profile the homeserver child during each N's rounds. */
  profile: boolean;
  /** Where the `.cpuprofile` files go; undefined: `.bench-tmp/profile-<time>/` (kept after the run). */
  profileDir: string | undefined;
}

const usage = `Usage: npm run bench -- [options]
  --json                 print a JSON summary as the last line
  --quick                small N, short rounds: a smoke test
  --relay-only           run only the relay baseline
  --client-pipeline-only run only the client-pipeline row (ZimClient send -> homeserver
                         -> ZimClient receive next to raw libsignal); --rounds sets its
                         rounds (default 3, --quick 2), --quick its 500 messages a round
                         (else 2,000); with --json the summary holds only its figures
  --ns 100,1000          connected devices per phase (last = headline)
  --rounds 3             rounds per server, interleaved
  --duration 4           seconds per throughput round
  --window K             in-flight messages per device (default: about 4,000 in all,
                         enough to saturate either server at N = 100 and 1,000)
  --rate 2000            open-loop msgs/s for latency
  --latency-duration 5   seconds per latency round
  --idle 5000            connections for idle memory
  --quiet-wait 5         seconds to wait, before a round, for other processes to
                         use < 25% of a core (0: never); at most 30 s per run
  --database sqlite      the homeserver's database in the throughput, latency and idle
                         rounds: sqlite (default) or postgresql. PostgreSQL: a fresh
                         schema, dropped afterwards, in ZIMCHAT_BENCH_DATABASE_URL, else
                         a postgres DATABASE_URL, else postgresql://postgres@127.0.0.1:5432/test
  --profile              CPU-profile the homeserver child (inspector sampling profiler,
                         main thread and worker threads) over each N's measured rounds;
                         writes .cpuprofile files and prints self time by package
                         (node_modules/<pkg>, workspaces, node: internals, GC) and the
                         top functions, as percentages of busy (non-idle) time.
                         Profiling slows the homeserver: its figures in that run are
                         not comparable with unprofiled runs
  --profile-dir DIR      where the .cpuprofile files go (default .bench-tmp/profile-<time>/,
                         kept after the run; implies --profile)
  --keep-tmp             keep .bench-tmp/<run>
  --help                 this text

Output: the event-loop delay p99 of each server child during the latency rounds
(monitorEventLoopDelay, 1 ms resolution, the resolution subtracted) is printed in
the latency table and in the JSON (relay_loop_delay_p99_ms, homeserver_loop_delay_p99_ms
at the headline N; by_n[].<server>.loop_delay_p99_ms per N).`;

/** Parses `argv` (without node and script); throws with the usage text on a bad option. */
export function parseBenchOptions(argv: string[], env: NodeJS.ProcessEnv = process.env): BenchOptions {
  const { values } = parseArgs({
    args: argv,
    options: {
      json: { type: "boolean", default: false },
      quick: { type: "boolean", default: false },
      "relay-only": { type: "boolean", default: false },
      "client-pipeline-only": { type: "boolean", default: false },
      ns: { type: "string" },
      rounds: { type: "string" },
      duration: { type: "string" },
      window: { type: "string" },
      rate: { type: "string" },
      "latency-duration": { type: "string" },
      idle: { type: "string" },
      "quiet-wait": { type: "string" },
      "keep-tmp": { type: "boolean", default: false },
      database: { type: "string", default: "sqlite" },
      profile: { type: "boolean", default: false },
      "profile-dir": { type: "string" },
      help: { type: "boolean", default: false },
    },
  });
  if (values.help) {
    process.stdout.write(`${usage}\n`);
    process.exit(0);
  }
  const quick = values.quick;
  const number = (name: string, raw: string | undefined, fallback: number): number => {
    if (raw === undefined) return fallback;
    const value = Number(raw);
    if (!Number.isFinite(value) || value <= 0)
      throw new Error(`--${name} must be a positive number, got "${raw}"\n${usage}`);
    return value;
  };
  const ns =
    values.ns === undefined ? (quick ? [20, 100] : [100, 1000]) : values.ns.split(",").map((v) => number("ns", v, 0));
  const idleConnections = Math.round(number("idle", values.idle, quick ? 500 : 5000));
  if (Math.max(...ns) > idleConnections)
    throw new Error(`--idle (${idleConnections}) must be at least the largest --ns`);
  const database = values.database;
  if (database !== "sqlite" && database !== "postgresql")
    throw new Error(`--database must be sqlite or postgresql, got "${database}"\n${usage}`);
  if (values["client-pipeline-only"] && values["relay-only"])
    throw new Error(`--client-pipeline-only and --relay-only exclude each other\n${usage}`);
  if (database === "postgresql" && values["relay-only"])
    throw new Error(`--database postgresql needs the homeserver: drop --relay-only\n${usage}`);
  const profile = values.profile || values["profile-dir"] !== undefined;
  if (profile && values["client-pipeline-only"])
    throw new Error(
      `--profile profiles the homeserver's throughput rounds; to profile the client pipeline (its clients run in the bench process), run node --cpu-prof bench/dist/src/main.js --client-pipeline-only\n${usage}`,
    );
  if (profile && values["relay-only"])
    throw new Error(`--profile profiles the homeserver: drop --relay-only\n${usage}`);
  return {
    json: values.json,
    quick,
    relayOnly: values["relay-only"],
    clientPipelineOnly: values["client-pipeline-only"],
    ns: ns.map(Math.round),
    rounds: Math.round(number("rounds", values.rounds, quick ? 2 : 3)),
    roundsGiven: values.rounds !== undefined,
    durationMs: number("duration", values.duration, quick ? 1.5 : 4) * 1000,
    warmupMs: quick ? 500 : 1000,
    window: values.window === undefined ? undefined : Math.round(number("window", values.window, 1)),
    rate: number("rate", values.rate, 2000),
    latencyDurationMs: number("latency-duration", values["latency-duration"], quick ? 1.5 : 5) * 1000,
    idleConnections,
    payloadBytes: 300,
    quietWaitMs: values["quiet-wait"] === "0" ? 0 : number("quiet-wait", values["quiet-wait"], quick ? 2 : 5) * 1000,
    quietBudgetMs: quick ? 10_000 : 30_000,
    keepTmp: values["keep-tmp"],
    database,
    databaseUrl: benchDatabaseUrl(env),
    profile,
    profileDir: values["profile-dir"],
  };
}

/** In-flight messages per device for `n` devices. */
export function windowFor(options: BenchOptions, n: number): number {
  return options.window ?? Math.max(1, Math.round(4000 / n));
}

/**
 * The PostgreSQL of `--database postgresql` and of the cluster row:
 * `ZIMCHAT_BENCH_DATABASE_URL`, else a PostgreSQL `DATABASE_URL`, else the
 * local one the build machines run.
 */
export function benchDatabaseUrl(env: NodeJS.ProcessEnv = process.env): string {
  const postgres = [env.ZIMCHAT_BENCH_DATABASE_URL, env.DATABASE_URL].find((u) => u?.startsWith("postgres"));
  return postgres ?? "postgresql://postgres@127.0.0.1:5432/test";
}
