// A `TacitStorage` on IndexedDB: one object store, "records", holding each
// sealed record under its storage key. `write` applies a batch in one
// readwrite transaction (all or none); IndexedDB runs transactions over the
// same store in the order they were created, so batches land in call order.

const STORE = "records";

function request(req) {
  return new Promise((resolve, reject) => {
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
}

function done(tx) {
  return new Promise((resolve, reject) => {
    tx.oncomplete = () => resolve();
    tx.onerror = () => reject(tx.error);
    tx.onabort = () => reject(tx.error ?? new Error("IndexedDB transaction aborted"));
  });
}

export class IdbStorage {
  /** Opens (or creates) the database `name`. */
  static async open(name = "tacit") {
    const req = indexedDB.open(name, 1);
    req.onupgradeneeded = () => req.result.createObjectStore(STORE);
    return new IdbStorage(await request(req));
  }

  constructor(db) {
    this.db = db;
  }

  /** Every stored record, as `{ key, value }`. */
  async load() {
    const tx = this.db.transaction(STORE, "readonly");
    const store = tx.objectStore(STORE);
    const [keys, values] = await Promise.all([
      request(store.getAllKeys()),
      request(store.getAll()),
    ]);
    await done(tx);
    return keys.map((key, i) => ({ key, value: new Uint8Array(values[i]) }));
  }

  /** Puts each record (`value: null` deletes it) in one transaction. */
  write(records) {
    const tx = this.db.transaction(STORE, "readwrite", { durability: "strict" });
    const store = tx.objectStore(STORE);
    for (const { key, value } of records) {
      if (value === null) store.delete(key);
      else store.put(value, key);
    }
    return done(tx);
  }

  /** Closes the database. */
  close() {
    this.db.close();
  }
}
