/**
 * A package-lock.json for a project outside this repository that installs
 * packed workspaces (tarballs), with every other package at the version this
 * repository's lockfile pins. With it, `npm ci --offline` installs from the
 * npm cache that this repository's own `npm ci` filled: npm needs only the
 * tarballs (found by integrity), no registry metadata.
 */

/** One entry of a lockfile's `packages` map (the fields used here). */
interface LockEntry {
  version?: string;
  resolved?: string;
  integrity?: string;
  link?: boolean;
  dev?: boolean;
  devOptional?: boolean;
  peer?: boolean;
  optional?: boolean;
  dependencies?: Record<string, string>;
  optionalDependencies?: Record<string, string>;
  peerDependencies?: Record<string, string>;
  peerDependenciesMeta?: Record<string, { optional?: boolean }>;
  [field: string]: unknown;
}

/** A lockfile (version 3). */
export interface Lockfile {
  name?: string;
  lockfileVersion: number;
  requires?: boolean;
  packages: Record<string, LockEntry>;
}

/** A packed workspace: its manifest and where its tarball is, relative to the new project. */
export interface PackedPackage {
  manifest: { name: string; version: string; dependencies?: Record<string, string>; [field: string]: unknown };
  /** e.g. `file:packs/zimchat-client-0.1.0.tgz` */
  resolved: string;
  /** The tarball's `sha512-…` integrity. */
  integrity: string;
}

/** The lockfile paths node's resolution tries for `name`, required from the package at `from` (innermost first). */
function candidates(from: string, name: string): string[] {
  const out: string[] = [];
  let dir = from;
  for (;;) {
    out.push(dir ? `${dir}/node_modules/${name}` : `node_modules/${name}`);
    if (!dir) return out;
    const cut = dir.lastIndexOf("/node_modules/");
    dir = cut < 0 ? "" : dir.slice(0, cut);
  }
}

/**
 * The lockfile of a project named `name` whose dependencies are exactly the
 * `packed` tarballs, their dependencies resolved as `repoLock` resolves them.
 * @throws Error naming a dependency the repository's lockfile does not hold
 */
export function offlineLockfile(name: string, repoLock: Lockfile, packed: PackedPackage[]): Lockfile {
  const byName = new Map(packed.map((p) => [p.manifest.name, p]));
  const packages: Record<string, LockEntry> = {
    "": { name, dependencies: Object.fromEntries(packed.map((p) => [p.manifest.name, p.resolved])) },
  };
  const queue: string[] = [];
  for (const p of packed) {
    const path = `node_modules/${p.manifest.name}`;
    const { name: _name, version, license, engines, bin, dependencies } = p.manifest;
    packages[path] = { version, resolved: p.resolved, integrity: p.integrity, license, engines, bin, dependencies };
    queue.push(path);
  }
  while (queue.length) {
    const from = queue.shift()!;
    const entry = packages[from]!;
    const wanted: [string, boolean][] = [
      ...Object.keys(entry.dependencies ?? {}).map((d): [string, boolean] => [d, false]),
      ...Object.keys(entry.optionalDependencies ?? {}).map((d): [string, boolean] => [d, true]),
      ...Object.keys(entry.peerDependencies ?? {}).map((d): [string, boolean] => [
        d,
        entry.peerDependenciesMeta?.[d]?.optional === true,
      ]),
    ];
    for (const [dep, optional] of wanted) {
      if (byName.has(dep)) continue; // one of the tarballs, at node_modules/<name>
      const path = candidates(from, dep).find(
        (c) => c in packages || (c in repoLock.packages && !repoLock.packages[c]!.link),
      );
      if (path === undefined) {
        if (optional) continue;
        throw new Error(`${dep} (needed by ${from}) is not in the repository's lockfile`);
      }
      if (path in packages) continue;
      const { dev: _dev, devOptional: _devOptional, peer: _peer, ...copy } = repoLock.packages[path]!;
      packages[path] = copy;
      queue.push(path);
    }
  }
  return { name, lockfileVersion: 3, requires: true, packages };
}
