import type {
  DeviceStore,
  KnownIdentity,
  LocalDevice,
  PreKeyKind,
  StoredMessage,
  StoredPreKey,
} from "./device-store.js";

/** A device store in memory, for tests and throwaway devices. `transaction` rolls back on error. */
export class MemoryDeviceStore implements DeviceStore {
  private state = MemoryDeviceStore.empty();

  private static empty() {
    return {
      local: null as LocalDevice | null,
      sessions: new Map<string, Uint8Array<ArrayBuffer>>(),
      identities: new Map<string, KnownIdentity>(),
      preKeys: {
        ec: new Map<number, StoredPreKey>(),
        signed: new Map<number, StoredPreKey>(),
        kyber: new Map<number, StoredPreKey>(),
      },
      values: new Map<string, string>(),
      bindings: new Map<string, string>(),
      processed: new Map<string, number>(),
      messages: [] as StoredMessage[],
    };
  }

  getLocal(): LocalDevice | null {
    return this.state.local;
  }
  setLocal(local: LocalDevice): void {
    this.state.local = local;
  }
  getSession(address: string): Uint8Array<ArrayBuffer> | null {
    return this.state.sessions.get(address) ?? null;
  }
  saveSession(address: string, record: Uint8Array<ArrayBuffer>): void {
    this.state.sessions.set(address, record);
  }
  deleteSession(address: string): void {
    this.state.sessions.delete(address);
  }
  clearSessions(): void {
    this.state.sessions.clear();
  }
  sessionDevices(uuid: string): number[] {
    return [...this.state.sessions.keys()]
      .filter((a) => a.startsWith(`${uuid}.`))
      .map((a) => Number(a.slice(uuid.length + 1)))
      .sort((a, b) => a - b);
  }
  getIdentity(uuid: string): KnownIdentity | null {
    return this.state.identities.get(uuid) ?? null;
  }
  saveIdentity(identity: KnownIdentity): void {
    this.state.identities.set(identity.uuid, identity);
  }
  getPreKey(kind: PreKeyKind, id: number): StoredPreKey | null {
    return this.state.preKeys[kind].get(id) ?? null;
  }
  savePreKey(kind: PreKeyKind, key: StoredPreKey): void {
    this.state.preKeys[kind].set(key.id, key);
  }
  removePreKey(kind: PreKeyKind, id: number): void {
    this.state.preKeys[kind].delete(id);
  }
  listPreKeys(kind: PreKeyKind): StoredPreKey[] {
    return [...this.state.preKeys[kind].values()].sort((a, b) => a.createdAt - b.createdAt || a.id - b.id);
  }
  getValue(key: string): string | null {
    return this.state.values.get(key) ?? null;
  }
  setValue(key: string, value: string): void {
    this.state.values.set(key, value);
  }
  valuesWithPrefix(prefix: string): [string, string][] {
    return [...this.state.values].filter(([k]) => k.startsWith(prefix)).sort(([a], [b]) => a.localeCompare(b));
  }
  deleteValue(key: string): void {
    this.state.values.delete(key);
  }
  getServerBinding(uuid: string): string | null {
    return this.state.bindings.get(uuid) ?? null;
  }
  bindServer(uuid: string, server: string, _at: number): string {
    const bound = this.state.bindings.get(uuid);
    if (bound !== undefined) return bound;
    this.state.bindings.set(uuid, server);
    return server;
  }
  hasProcessed(envelopeId: string): boolean {
    return this.state.processed.has(envelopeId);
  }
  markProcessed(envelopeId: string, at: number): void {
    this.state.processed.set(envelopeId, at);
  }
  pruneProcessed(before: number, keep: number): number {
    const newest = [...this.state.processed]
      .filter(([, at]) => at >= before)
      .sort((a, b) => b[1] - a[1])
      .slice(0, keep);
    const forgotten = this.state.processed.size - newest.length;
    this.state.processed = new Map(newest);
    return forgotten;
  }
  addMessage(message: StoredMessage): void {
    this.state.messages.push(message);
  }
  messages(peer: string, limit = 1000): StoredMessage[] {
    return this.state.messages.filter((m) => m.peer === peer).slice(-limit);
  }

  async transaction<T>(work: () => Promise<T>): Promise<T> {
    const snapshot = this.snapshot();
    try {
      return await work();
    } catch (error) {
      this.state = snapshot;
      throw error;
    }
  }

  close(): void {}

  private snapshot(): typeof this.state {
    const s = this.state;
    return {
      local: s.local,
      sessions: new Map(s.sessions),
      identities: new Map(s.identities),
      preKeys: { ec: new Map(s.preKeys.ec), signed: new Map(s.preKeys.signed), kyber: new Map(s.preKeys.kyber) },
      values: new Map(s.values),
      bindings: new Map(s.bindings),
      processed: new Map(s.processed),
      messages: [...s.messages],
    };
  }
}
