import type { DeviceStore } from "./store/device-store.js";

/**
 * The key of a store write that a failing task still makes: an error
 * carrying it (`{ [recordAfterRollback]: () => void }`) has its task's own
 * changes rolled back, then this runs and commits with the batch. A refused
 * send uses it to keep what it learned (a contact's new identity key,
 * pending) while everything else it did is undone.
 */
export const recordAfterRollback: unique symbol = Symbol("recordAfterRollback");

/** Attaches store work that must survive the failure of the task that throws `error`. */
export function withRecord<E extends Error>(error: E, record: () => void): E {
  return Object.assign(error, { [recordAfterRollback]: record });
}

interface Pending {
  task: () => Promise<unknown>;
  resolve: (value: unknown) => void;
  reject: (error: unknown) => void;
}

/**
 * Runs store work one task at a time, in submission order, with group
 * commit: the tasks waiting when a batch starts run inside one store
 * transaction (one fsync), each in a savepoint of its own, so one failing
 * task rolls back only its own changes. Every task's promise settles after
 * the commit is durable, so nothing is sent or acknowledged before it is on
 * disk. With a store that syncs off the event loop
 * ({@link DeviceStore.transactionDeferringSync}), the next batch runs while
 * the previous one's commit is being synced; batches still settle in order,
 * each after its own commit is durable.
 */
export class StoreQueue {
  private pending: Pending[] = [];
  private running: Promise<void> | null = null;
  /** The last committed batch's settling (after its sync). */
  private settled: Promise<void> = Promise.resolve();

  constructor(
    private readonly store: DeviceStore,
    private readonly maxBatch = 64,
  ) {}

  run<T>(task: () => Promise<T> | T): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.pending.push({ task: async () => task(), resolve: resolve as (value: unknown) => void, reject });
      this.running ??= this.loop();
    });
  }

  /** Resolves when every task submitted so far has settled. */
  async idle(): Promise<void> {
    while (this.running) await this.running;
    await this.settled;
  }

  private async loop(): Promise<void> {
    await Promise.resolve();
    while (this.pending.length) {
      const batch = this.pending.splice(0, this.maxBatch);
      const outcomes: ({ value: unknown } | { error: unknown })[] = [];
      const work = async (): Promise<void> => {
        for (const item of batch) {
          try {
            outcomes.push({ value: await this.store.transaction(item.task) });
          } catch (error) {
            const record = (error as { [recordAfterRollback]?: () => void } | null)?.[recordAfterRollback];
            try {
              record?.();
              outcomes.push({ error });
            } catch (recordError) {
              outcomes.push({ error: recordError });
            }
          }
        }
      };
      let durable: Promise<void>;
      try {
        if (this.store.transactionDeferringSync) {
          ({ durable } = await this.store.transactionDeferringSync(work));
        } else {
          // Resolves once durable.
          await this.store.transaction(work);
          durable = Promise.resolve();
        }
      } catch (error) {
        // The commit itself failed: nothing of the batch is durable.
        batch.forEach((item) => item.reject(error));
        continue;
      }
      const settle = (): void =>
        batch.forEach((item, i) => {
          const outcome = outcomes[i]!;
          if ("value" in outcome) item.resolve(outcome.value);
          else item.reject(outcome.error);
        });
      // Each batch settles after the one before it and after its own commit is on disk; a failed sync fails the batch.
      this.settled = Promise.all([this.settled, durable]).then(settle, (error: unknown) =>
        batch.forEach((item) => item.reject(error)),
      );
    }
    this.running = null;
  }
}
