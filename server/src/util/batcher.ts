/** The outcome of one item in a batch: a value, or the error for that item alone. */
export type Outcome<R> = { value: R } | { error: unknown };

/**
 * Group commit: items submitted while a batch is being written wait and go
 * together in the next one, so one transaction (and one fsync) serves many
 * requests. Under light load a batch holds one item and adds no delay; under
 * heavy load batches grow up to `maxBatch`.
 */
export class Batcher<T, R> {
  private queue: { item: T; resolve: (value: R) => void; reject: (error: unknown) => void }[] = [];
  private running: Promise<void> | null = null;

  constructor(
    private readonly run: (items: T[]) => Promise<Outcome<R>[]>,
    private readonly maxBatch = 256,
  ) {}

  /** Adds an item to the next batch; settles with that item's outcome. */
  submit(item: T): Promise<R> {
    return new Promise<R>((resolve, reject) => {
      this.queue.push({ item, resolve, reject });
      this.running ??= this.loop();
    });
  }

  /** Resolves when every submitted item has settled. */
  async idle(): Promise<void> {
    while (this.running) await this.running;
  }

  private async loop(): Promise<void> {
    // Let the current tick's submissions join the first batch.
    await new Promise<void>((resolve) => setImmediate(resolve));
    while (this.queue.length) {
      const batch = this.queue.splice(0, this.maxBatch);
      const outcomes = await this.runIsolated(batch.map((b) => b.item));
      batch.forEach((b, i) => {
        const outcome = outcomes[i] ?? { error: new Error("batch returned no outcome") };
        if ("value" in outcome) b.resolve(outcome.value);
        else b.reject(outcome.error);
      });
    }
    this.running = null;
  }

  /**
   * Runs a batch; if the batch as a whole fails (one item's constraint
   * violation aborts the shared transaction), each item runs alone, so one
   * bad item cannot fail the others.
   */
  private async runIsolated(items: T[]): Promise<Outcome<R>[]> {
    try {
      return await this.run(items);
    } catch (error) {
      if (items.length === 1) return [{ error }];
      const outcomes: Outcome<R>[] = [];
      for (const item of items) outcomes.push(...(await this.runIsolated([item])));
      return outcomes;
    }
  }
}
