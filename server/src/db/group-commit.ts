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
 * If a statement fails in a way that may have ended SQLite's transaction
 * (anything but a constraint violation: I/O errors, a full disk), the group
 * is poisoned: it rolls back as a whole and every member's commit fails, so
 * no member is told its work is committed when it is not.
 */

/** Runs statements without arguments (one, or several separated by `;`) on the writer connection. */
export type RunStatement = (sql: string) => Promise<void>;

/** Limits of one group. */
export interface GroupCommitLimits {
  /** @default 64 */
  maxMembers?: number;
  /** A group that has been open this long takes no new member. @default 20 */
  maxAgeMs?: number;
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

/** Constraint violations end the statement only, never the transaction (SQLite's default ABORT resolution). */
const statementOnly = new Set([
  "UniqueConstraintViolation",
  "NullConstraintViolation",
  "ForeignKeyConstraintViolation",
]);

export class GroupCommit {
  private holder = false;
  private readonly waiters: { joinable: boolean; grant: () => void }[] = [];
  private group: Group | null = null;
  private nextSavepoint = 0;
  private readonly counts: GroupCommitStats = { commits: 0, members: 0 };
  private readonly maxMembers: number;
  private readonly maxAgeMs: number;

  constructor(
    private readonly run: RunStatement,
    limits: GroupCommitLimits = {},
  ) {
    this.maxMembers = limits.maxMembers ?? 64;
    this.maxAgeMs = limits.maxAgeMs ?? 20;
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
      await this.run(group ? `SAVEPOINT ${savepoint}` : `BEGIN; SAVEPOINT ${savepoint}`);
    } catch (error) {
      if (group) {
        group.poisoned ??= error;
        await this.close(group, "");
      } else {
        await this.run("ROLLBACK").catch(() => {});
        this.release();
      }
      throw error;
    }
    this.group ??= { startedAt: Date.now(), members: 0, poisoned: null, durable: [] };
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
        await this.run(release);
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

  /** Notes a failed statement of the running member: one that may have ended the transaction poisons the group. */
  statementFailed(error: unknown): void {
    const kind = (error as { cause?: { kind?: unknown } } | null)?.cause?.kind;
    if (this.group && !(typeof kind === "string" && statementOnly.has(kind))) this.group.poisoned ??= error;
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
      await this.run(failure ? "ROLLBACK" : `${before}COMMIT`);
    } catch (error) {
      failure ??= error;
      // A failed COMMIT can leave the transaction open; SQLite may also have rolled it back already.
      await this.run("ROLLBACK").catch(() => {});
    }
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
}
