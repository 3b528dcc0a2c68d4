/**
 * Group commit for SQLite's one writer connection: transactions that come
 * while another is running share its transaction, each inside its own
 * savepoint, and the group ends with one COMMIT (one fsync). Each member's
 * commit resolves only after that COMMIT, so "committed" still means
 * durable; a member that rolls back rolls back its savepoint only.
 *
 * Without it, a batch of sends and a batch of acknowledgements arriving
 * together paid one fsync each, one after the other; with it they pay one.
 * A group grows only while members are waiting for the writer, up to
 * `maxMembers` or `maxAgeMs`, so a lone transaction commits at once.
 *
 * Under steady load, a group of units starts no sooner than
 * `minCommitIntervalMs` after the previous COMMIT, gathering the units that
 * arrive meanwhile: a COMMIT costs about 90 us of CPU (the WAL write and the
 * fsync), more than the statements it commits, so at 2,000 messages a
 * second one COMMIT per send and per acknowledgement took a third of a
 * core. Like PostgreSQL's `commit_delay`, it waits only when commits are
 * frequent; a write after a quiet spell commits at once.
 *
 * Two kinds of member: an interactive transaction (`begin`, its statements
 * one by one, `end`), as the Prisma client drives one; and a unit, whose
 * statements are known in advance (`unit`). Units waiting together run in
 * one round trip to the writer: BEGIN, each unit's savepoint, statements and
 * release, and the COMMIT when nobody else waits to join.
 *
 * If a statement fails in a way that may have ended SQLite's transaction
 * (anything but a constraint violation: I/O errors, a full disk), the group
 * is poisoned: it rolls back as a whole and every member's commit fails, so
 * no member is told its work is committed when it is not.
 */
import type { SqlQuery, SqlResultSet } from "@prisma/driver-adapter-utils";
import type { Step, StepsOutcome } from "./sqlite-worker-protocol.js";

/** Runs steps in order on the writer connection, in one round trip, until one fails. */
export type RunSteps = (steps: Step[]) => Promise<StepsOutcome>;

/** Limits of one group. */
export interface GroupCommitLimits {
  /** @default 64 */
  maxMembers?: number;
  /** A group that has been open this long takes no new member. @default 20 */
  maxAgeMs?: number;
  /** Under load, the least time from one COMMIT to the start of the next group of units. @default 2 */
  minCommitIntervalMs?: number;
}

/** What the writer has committed so far. */
export interface GroupCommitStats {
  /** COMMITs that succeeded (one fsync each with `synchronous=FULL`). */
  commits: number;
  /** Transactions and single writes they committed. */
  members: number;
}

/** A transaction inside the group: its savepoint. */
export interface Member {
  readonly savepoint: string;
}

interface Group {
  startedAt: number;
  members: number;
  poisoned: unknown;
  /** The committed members, waiting for the group's COMMIT. */
  durable: { resolve: () => void; reject: (error: unknown) => void }[];
}

/** A member whose statements are known in advance. */
interface Unit {
  queries: SqlQuery[];
  resolve: (results: SqlResultSet[]) => void;
  reject: (error: unknown) => void;
}

interface Waiter {
  joinable: boolean;
  /** Set for a unit: it runs with the units queued behind it. */
  unit?: Unit;
  grant: () => void;
}

/** Constraint violations end the statement only, never the transaction (SQLite's default ABORT resolution). */
const statementOnly = new Set([
  "UniqueConstraintViolation",
  "NullConstraintViolation",
  "ForeignKeyConstraintViolation",
]);

export class GroupCommit {
  private holder = false;
  private readonly waiters: Waiter[] = [];
  private group: Group | null = null;
  private nextSavepoint = 0;
  private readonly counts: GroupCommitStats = { commits: 0, members: 0 };
  private readonly maxMembers: number;
  private readonly maxAgeMs: number;
  private readonly minCommitIntervalMs: number;
  /** When the last COMMIT (or ROLLBACK) ended. */
  private lastCommitAt = 0;

  constructor(
    private readonly run: RunSteps,
    limits: GroupCommitLimits = {},
  ) {
    this.maxMembers = limits.maxMembers ?? 64;
    this.maxAgeMs = limits.maxAgeMs ?? 20;
    this.minCommitIntervalMs = limits.minCommitIntervalMs ?? 2;
  }

  /** Commits and committed members so far. */
  stats(): GroupCommitStats {
    return { ...this.counts };
  }

  /** Starts a member: BEGIN if no group is open, then the member's savepoint (one round trip). */
  async begin(): Promise<Member> {
    await this.acquire(true);
    const savepoint = `zimchat_member_${this.nextSavepoint++}`;
    const group = this.group;
    try {
      await this.exec(group ? `SAVEPOINT ${savepoint}` : `BEGIN; SAVEPOINT ${savepoint}`);
    } catch (error) {
      if (group) {
        group.poisoned ??= error;
        await this.close(group, "");
      } else {
        await this.exec("ROLLBACK").catch(() => {});
        this.release();
      }
      throw error;
    }
    this.group ??= newGroup();
    this.group.members++;
    return { savepoint };
  }

  /**
   * Ends a member. A commit resolves once the group's COMMIT has (it
   * rejects if the group rolled back); a rollback undoes the member's
   * savepoint only. The last member of a group releases its savepoint and
   * commits in one round trip.
   */
  async end(member: Member, commit: boolean): Promise<void> {
    const group = this.group!;
    const release = `${commit ? "" : `ROLLBACK TO SAVEPOINT ${member.savepoint}; `}RELEASE SAVEPOINT ${member.savepoint}`;
    const durable = commit ? new Promise<void>((resolve, reject) => group.durable.push({ resolve, reject })) : null;
    if (this.takesAnother(group)) {
      try {
        await this.exec(release);
        // The next waiting member joins the open group.
        this.waiters.shift()!.grant();
      } catch (error) {
        group.poisoned ??= error;
        await this.close(group, "");
      }
    } else await this.close(group, group.poisoned ? "" : `${release}; `);
    // A rolled-back member is done whatever became of the group.
    if (durable) await durable;
  }

  /**
   * Runs statements known in advance as one member, in its own savepoint,
   * in one round trip shared with the units waiting with it.
   * @returns each statement's result set, once the group's COMMIT is durable
   * @throws the failed statement's error (its savepoint rolled back), or the group's failure
   */
  unit(queries: SqlQuery[]): Promise<SqlResultSet[]> {
    return new Promise((resolve, reject) => {
      const unit: Unit = { queries, resolve, reject };
      if (!this.holder) {
        this.holder = true;
        void this.runUnits([unit]);
      } else this.waiters.push({ joinable: true, unit, grant: () => void this.runUnits(this.unitsFrom(unit)) });
    });
  }

  /**
   * Units that would open a group right after a COMMIT wait out the rest of
   * `minCommitIntervalMs` (holding the writer) and take along the units
   * that queued meanwhile.
   */
  private async gather(units: Unit[]): Promise<Unit[]> {
    if (this.group) return units;
    const wait = this.lastCommitAt + this.minCommitIntervalMs - performance.now();
    if (wait <= 0) return units;
    await new Promise((resolve) => setTimeout(resolve, wait));
    return this.withQueuedUnits(units);
  }

  /** Notes a failed statement of the running member: one that may have ended the transaction poisons the group. */
  statementFailed(error: unknown): void {
    const kind = kindOf(error);
    if (this.group && !(kind && statementOnly.has(kind))) this.group.poisoned ??= error;
  }

  /** Runs `work` with the writer to itself, outside any group (PRAGMAs, scripts): after the open group commits. */
  async alone<T>(work: () => Promise<T>): Promise<T> {
    await this.acquire(false);
    try {
      return await work();
    } finally {
      this.release();
    }
  }

  private acquire(joinable: boolean): Promise<void> {
    if (!this.holder) {
      this.holder = true;
      return Promise.resolve();
    }
    return new Promise((grant) => this.waiters.push({ joinable, grant }));
  }

  private release(): void {
    const next = this.waiters.shift();
    if (next) next.grant();
    else this.holder = false;
  }

  /** Whether the group stays open for the member waiting next. */
  private takesAnother(group: Group): boolean {
    const waiting = this.waiters[0];
    return (
      waiting !== undefined &&
      waiting.joinable &&
      !group.poisoned &&
      group.members < this.maxMembers &&
      Date.now() - group.startedAt < this.maxAgeMs
    );
  }

  /** Ends the group (after `before`, the last member's release): COMMIT, or ROLLBACK if poisoned; frees the writer. */
  private async close(group: Group, before: string): Promise<void> {
    this.group = null;
    let failure = group.poisoned;
    try {
      await this.exec(failure ? "ROLLBACK" : `${before}COMMIT`);
    } catch (error) {
      failure ??= error;
      // A failed COMMIT can leave the transaction open; SQLite may also have rolled it back already.
      await this.exec("ROLLBACK").catch(() => {});
    }
    this.settle(group, failure);
  }

  /** Tells the group's members how it ended and frees the writer. */
  private settle(group: Group, failure: unknown): void {
    this.lastCommitAt = performance.now();
    if (!failure) {
      this.counts.commits++;
      this.counts.members += group.durable.length;
    }
    for (const member of group.durable) {
      if (failure) member.reject(failure);
      else member.resolve();
    }
    this.release();
  }

  /** The granted unit and the units queued right behind it, up to the group's size. */
  private unitsFrom(first: Unit): Unit[] {
    return this.withQueuedUnits([first]);
  }

  /** `units` and the units queued first among the waiters, as many as the open group (or a new one) has room for. */
  private withQueuedUnits(units: Unit[]): Unit[] {
    const room = this.maxMembers - (this.group?.members ?? 0);
    while (units.length < room && this.waiters[0]?.unit) units.push(this.waiters.shift()!.unit!);
    return units;
  }

  /**
   * Runs units in one round trip: BEGIN if no group is open; each unit's
   * savepoint, statements and release; COMMIT if nobody waits to join. A
   * unit whose statement broke a constraint rolls back alone and the units
   * after it run next; any other failure rolls the group back.
   */
  private async runUnits(waiting: Unit[]): Promise<void> {
    const units = await this.gather(waiting);
    const opened = this.group === null;
    const group = (this.group ??= newGroup());
    group.members += units.length;
    const steps: Step[] = opened ? ["BEGIN"] : [];
    const spans = units.map((unit) => {
      const savepoint = `zimchat_member_${this.nextSavepoint++}`;
      const start = steps.length;
      steps.push(`SAVEPOINT ${savepoint}`, ...unit.queries, `RELEASE SAVEPOINT ${savepoint}`);
      return { unit, savepoint, start, release: steps.length - 1 };
    });
    const commit = !this.takesAnother(group);
    if (commit) steps.push("COMMIT");
    let outcome: StepsOutcome;
    try {
      outcome = await this.run(steps);
    } catch (error) {
      outcome = { results: [], failure: { at: 0, error: error as Error } };
    }
    const { failure } = outcome;
    // The units that reached their release are members of the group, durable with its COMMIT.
    let done = 0;
    for (const span of spans) {
      if (failure && failure.at <= span.release) break;
      const results = outcome.results.slice(span.start + 1, span.release) as SqlResultSet[];
      group.durable.push({ resolve: () => span.unit.resolve(results), reject: span.unit.reject });
      done++;
    }
    if (!failure) {
      if (!commit) return this.next(group);
      this.group = null;
      return this.settle(group, null);
    }
    const failed = spans[done];
    if (
      failed &&
      failure.at > failed.start &&
      failure.at < failed.release &&
      statementOnly.has(kindOf(failure.error) ?? "")
    ) {
      // Only that unit's statement failed: its savepoint rolls back, and the units after it run next.
      failed.unit.reject(failure.error);
      const rest = units.slice(done + 1);
      group.members -= rest.length + 1;
      try {
        await this.exec(`ROLLBACK TO SAVEPOINT ${failed.savepoint}; RELEASE SAVEPOINT ${failed.savepoint}`);
      } catch (error) {
        group.poisoned ??= error;
        for (const unit of rest) unit.reject(error);
        return this.close(group, "");
      }
      return rest.length ? this.runUnits(rest) : this.next(group);
    }
    // Anything else may have ended SQLite's transaction (or it was the COMMIT): the group rolls back.
    group.poisoned ??= failure.error;
    for (const span of spans.slice(done)) span.unit.reject(failure.error);
    return this.close(group, "");
  }

  /** After a member ends without committing the group: the next waiting member joins it, or the group commits. */
  private async next(group: Group): Promise<void> {
    if (this.takesAnother(group)) this.waiters.shift()!.grant();
    else await this.close(group, "");
  }

  /** Runs a script on the writer; throws its failure. */
  private async exec(sql: string): Promise<void> {
    const { failure } = await this.run([sql]);
    if (failure) throw failure.error;
  }
}

function newGroup(): Group {
  return { startedAt: Date.now(), members: 0, poisoned: null, durable: [] };
}

function kindOf(error: unknown): string | undefined {
  const kind = (error as { cause?: { kind?: unknown } } | null)?.cause?.kind;
  return typeof kind === "string" ? kind : undefined;
}
