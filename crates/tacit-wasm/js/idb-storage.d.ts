import type { StoredRecord, TacitStorage } from "./tacit_wasm.js";

/** A `TacitStorage` on IndexedDB: one object store of sealed records. */
export declare class IdbStorage implements TacitStorage {
  /** Opens (or creates) the database `name` (default "tacit"). */
  static open(name?: string): Promise<IdbStorage>;
  load(): Promise<StoredRecord[]>;
  write(records: StoredRecord[]): Promise<void>;
  /** Closes the database. */
  close(): void;
}
