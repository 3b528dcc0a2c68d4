/**
 * Where a server's CPU time goes, from V8 `.cpuprofile` files (the
 * inspector's `Profiler.stop` result, the same format `node --cpu-prof`
 * writes): each sample's time is the frame's self time, attributed to the
 * package its script belongs to. Pure functions over the parsed JSON.
 */

/** The parts of a V8 CPU profile this reads. Times are in microseconds. */
export interface CpuProfile {
  nodes: { id: number; callFrame: CallFrame; hitCount?: number; children?: number[] }[];
  startTime: number;
  endTime: number;
  /** Node id of each sample. */
  samples?: number[];
  /** Time before each sample (the first from `startTime`). */
  timeDeltas?: number[];
}

/** A V8 stack frame. `lineNumber` is zero-based. */
export interface CallFrame {
  functionName: string;
  scriptId: string | number;
  url: string;
  lineNumber: number;
  columnNumber: number;
}

/** How to name the project's own code. */
export interface AttributionOptions {
  /** The repository root as a path (`/work/zimchat/`) or file URL; scripts under it are the project's. */
  root?: string;
  /** Workspace folder -> package name (`server` -> `@zimchat/server`); other folders are named `<folder>/`. */
  workspaces?: Readonly<Record<string, string>>;
}

/** Self time of one package (or V8 category). */
export interface PackageTime {
  package: string;
  selfMs: number;
  /** Of busy time (all threads' samples except `(idle)`). */
  percent: number;
}

/** Self time of one function. */
export interface FunctionTime {
  functionName: string;
  package: string;
  /** `path:line` (path relative to the repository or to `node_modules/`), or empty for V8's own entries. */
  location: string;
  selfMs: number;
  percent: number;
}

/** The breakdown of one or more profiles (for example the main thread and a worker of one process). */
export interface ProfileBreakdown {
  /** Sampled time over all profiles, in ms. */
  totalMs: number;
  idleMs: number;
  /** totalMs - idleMs: what the percentages are of. */
  busyMs: number;
  samples: number;
  /** Every package with samples, most self time first; `(idle)` is left out. */
  packages: PackageTime[];
  /** Every function with samples, most self time first; `(idle)` is left out. */
  functions: FunctionTime[];
}

/** The V8 pseudo-frames, named as V8 names them. */
const v8Categories = new Set(["(garbage collector)", "(program)", "(idle)", "(root)"]);
const idle = "(idle)";
const builtins = "(V8 builtins)";

/**
 * The package a frame's code belongs to: `node_modules/<pkg>` or
 * `node_modules/@scope/pkg` (the innermost), the project's workspaces by
 * their folder, `node:` internals, the V8 categories `(garbage collector)`,
 * `(program)` and `(idle)`, `(V8 builtins)` for other frames without a script
 * (which {@link analyzeCpuProfiles} counts for their caller's package), and
 * `(other)` for anything else.
 */
export function packageOf(frame: Pick<CallFrame, "functionName" | "url">, options: AttributionOptions = {}): string {
  const { url, functionName } = frame;
  if (url === "") return v8Categories.has(functionName) ? functionName : builtins;
  if (url.startsWith("node:")) return "node: internals";
  if (url.startsWith("wasm:")) return "(wasm)";
  const path = toPath(url);
  const modules = path.lastIndexOf("/node_modules/");
  if (modules >= 0) {
    const [first = "", second = ""] = path.slice(modules + "/node_modules/".length).split("/");
    return first.startsWith("@") ? `${first}/${second}` : first;
  }
  const root = options.root === undefined ? undefined : withSlash(toPath(options.root));
  if (root !== undefined && path.startsWith(root)) {
    const [folder = ""] = path.slice(root.length).split("/");
    const name = options.workspaces?.[folder] ?? `${folder}/`;
    // The Prisma clients generated into the server's tree are Prisma's code, not the server's.
    return /\/generated\/prisma-[^/]+\//.test(path) ? `${name} (generated Prisma client)` : name;
  }
  return "(other)";
}

/**
 * Adds up self time per package and per function over `profiles`. A frame
 * without a script (a builtin such as `Array.prototype.push`, or a native
 * binding such as better-sqlite3's `run`) counts for the package of its
 * nearest caller that has a script; only when there is none is it
 * `(V8 builtins)`.
 */
export function analyzeCpuProfiles(
  profiles: readonly CpuProfile[],
  options: AttributionOptions = {},
): ProfileBreakdown {
  const byPackage = new Map<string, number>();
  const byFunction = new Map<string, FunctionTime>();
  let totalUs = 0;
  let idleUs = 0;
  let samples = 0;
  for (const profile of profiles) {
    const nodes = new Map(profile.nodes.map((node) => [node.id, node]));
    const parents = new Map<number, number>();
    for (const node of profile.nodes) for (const child of node.children ?? []) parents.set(child, node.id);
    const packages = new Map<number, string>();
    // A frame without a script (a V8 builtin or a native binding such as better-sqlite3's `run` or a
    // socket's `writev`) is time spent on behalf of its nearest caller that has one: it counts for that package.
    const resolvePackage = (id: number): string => {
      const known = packages.get(id);
      if (known !== undefined) return known;
      const frame = nodes.get(id)!.callFrame;
      let pkg = packageOf(frame, options);
      if (pkg === builtins) {
        const parent = parents.get(id);
        const parentFrame = parent === undefined ? undefined : nodes.get(parent)?.callFrame;
        if (parent !== undefined && parentFrame !== undefined && !v8Categories.has(parentFrame.functionName))
          pkg = resolvePackage(parent);
      }
      packages.set(id, pkg);
      return pkg;
    };
    for (const [nodeId, us] of sampleTimes(profile)) {
      const frame = nodes.get(nodeId)?.callFrame;
      if (frame === undefined) continue;
      samples += 1;
      totalUs += us;
      const pkg = resolvePackage(nodeId);
      if (pkg === idle) {
        idleUs += us;
        continue;
      }
      byPackage.set(pkg, (byPackage.get(pkg) ?? 0) + us);
      const location = locationOf(frame, options);
      const key = `${frame.functionName}\u0000${location}\u0000${pkg}`;
      const entry = byFunction.get(key) ?? {
        functionName: frame.functionName || "(anonymous)",
        package: pkg,
        location,
        selfMs: 0,
        percent: 0,
      };
      entry.selfMs += us / 1000;
      byFunction.set(key, entry);
    }
  }
  const busyUs = totalUs - idleUs;
  const percent = (us: number): number => (busyUs > 0 ? (us / busyUs) * 100 : 0);
  return {
    totalMs: totalUs / 1000,
    idleMs: idleUs / 1000,
    busyMs: busyUs / 1000,
    samples,
    packages: [...byPackage]
      .map(([name, us]) => ({ package: name, selfMs: us / 1000, percent: percent(us) }))
      .sort((a, b) => b.selfMs - a.selfMs),
    functions: [...byFunction.values()]
      .map((f) => ({ ...f, percent: percent(f.selfMs * 1000) }))
      .sort((a, b) => b.selfMs - a.selfMs),
  };
}

/**
 * Each sample's node id and duration in microseconds: a sample lasts until the
 * next one (the last until `endTime`). A profile without `samples` falls back
 * to `hitCount` spread evenly over its span.
 */
export function sampleTimes(profile: CpuProfile): [nodeId: number, us: number][] {
  const samples = profile.samples ?? [];
  const deltas = profile.timeDeltas ?? [];
  if (samples.length === 0) {
    const hits = profile.nodes.reduce((sum, n) => sum + (n.hitCount ?? 0), 0);
    const each = hits > 0 ? (profile.endTime - profile.startTime) / hits : 0;
    return profile.nodes.filter((n) => (n.hitCount ?? 0) > 0).map((n) => [n.id, n.hitCount! * each]);
  }
  const out: [number, number][] = [];
  let at = profile.startTime;
  const stamps = samples.map((_, i) => (at += deltas[i] ?? 0));
  for (let i = 0; i < samples.length; i++) {
    const next = i + 1 < samples.length ? stamps[i + 1]! : Math.max(profile.endTime, stamps[i]!);
    out.push([samples[i]!, Math.max(0, next - stamps[i]!)]);
  }
  return out;
}

/** The human table: packages, the top functions of the top packages, and the top functions overall. */
export function formatProfileBreakdown(
  b: ProfileBreakdown,
  limits: { packages?: number; functionsPerPackage?: number; packagesDetailed?: number; functions?: number } = {},
): string {
  const pct = (v: number): string => `${v.toFixed(1).padStart(5)}%`;
  const lines: string[] = [];
  lines.push(
    `  busy ${(b.busyMs / 1000).toFixed(2)} s of ${(b.totalMs / 1000).toFixed(2)} s sampled (${b.samples} samples); percentages are of busy time`,
  );
  const packages = b.packages.slice(0, limits.packages ?? 20);
  const width = Math.max(...packages.map((p) => p.package.length), 7);
  lines.push(`  ${"package".padEnd(width)}   self`);
  for (const p of packages) lines.push(`  ${p.package.padEnd(width)} ${pct(p.percent)}`);
  const rest = b.packages.slice(packages.length).reduce((sum, p) => sum + p.percent, 0);
  if (rest > 0) lines.push(`  ${`(${b.packages.length - packages.length} more)`.padEnd(width)} ${pct(rest)}`);
  lines.push("");
  lines.push("  Top functions of the top packages (self time)");
  for (const p of b.packages.slice(0, limits.packagesDetailed ?? 5)) {
    lines.push(`  ${p.package} ${pct(p.percent).trim()}`);
    for (const f of b.functions.filter((f) => f.package === p.package).slice(0, limits.functionsPerPackage ?? 4))
      lines.push(`    ${pct(f.percent)}  ${f.functionName}${f.location ? `  ${f.location}` : ""}`);
  }
  lines.push("");
  lines.push("  Top functions overall (self time)");
  for (const f of b.functions.slice(0, limits.functions ?? 10))
    lines.push(`  ${pct(f.percent)}  ${f.functionName}  [${f.package}]${f.location ? `  ${f.location}` : ""}`);
  return lines.join("\n");
}

function locationOf(frame: CallFrame, options: AttributionOptions): string {
  if (frame.url === "") return v8Categories.has(frame.functionName) ? "" : "(native or builtin)";
  let path = frame.url.startsWith("file:") ? toPath(frame.url) : frame.url;
  const modules = path.lastIndexOf("/node_modules/");
  const root = options.root === undefined ? undefined : withSlash(toPath(options.root));
  if (modules >= 0) path = path.slice(modules + "/node_modules/".length);
  else if (root !== undefined && path.startsWith(root)) path = path.slice(root.length);
  return `${path}:${frame.lineNumber + 1}`;
}

function toPath(urlOrPath: string): string {
  return urlOrPath.startsWith("file://") ? decodeURIComponent(urlOrPath.slice("file://".length)) : urlOrPath;
}

function withSlash(path: string): string {
  return path.endsWith("/") ? path : `${path}/`;
}
