// Decoded /features answers, fetched in fixed blocks of units and kept
// within a byte budget (least recently used first out).
//
// A block is BLOCK_UNITS consecutive units of one step, aligned: block b
// holds units b*BLOCK_UNITS .. (b+1)*BLOCK_UNITS-1 (the server clips the
// last one to the step's units). The grid asks for the blocks its visible
// rows need, so a 169-unit tag is one request and a 4,096-unit one is never
// fetched whole. Keys are (run, tag, step, block): any selection, the main
// one or a second one to compare with, reads the same store.

import {fetchFeatures} from "./model.js";

export const BLOCK_UNITS = 256;
const BUDGET_BYTES = 64 * 2 ** 20;
const RETRY_CAP_POLLS = 16;  // a failed block is fetched again at least every 16 polls

export class Store {
  /**
   * onLoad() after each block that arrives; fetchBlock(run, tag, step,
   * [start, stop]) -> Promise of a decoded answer (tests may swap it).
   */
  constructor({onLoad = () => {}, budget = BUDGET_BYTES, fetchBlock = fetchFeatures} = {}) {
    this.onLoad = onLoad;
    this.budget = budget;
    this.fetchBlock = fetchBlock;
    this.bytes = 0;
    // key -> {promise, value, error, bytes}; Map order is recency, oldest first.
    this.entries = new Map();
    // JSON [run, tag, step] -> the header of any block of that step: its
    // layout (units, window, ...). Small, so never evicted.
    this.headers = new Map();
  }

  /** The loaded block, or undefined (also while it loads or after it failed); marks it used. */
  get(run, tag, step, block) {
    const key = JSON.stringify([run, tag, step, block]);
    const entry = this.entries.get(key);
    if (!entry) return undefined;
    this.entries.delete(key);  // re-insert: most recently used last
    this.entries.set(key, entry);
    return entry.value;
  }

  /** The error the block's last fetch failed with, if it did. */
  error(run, tag, step, block) {
    return this.entries.get(JSON.stringify([run, tag, step, block]))?.error;
  }

  /** The header of some loaded block of the step (its layout), or undefined. */
  header(run, tag, step) {
    return this.headers.get(JSON.stringify([run, tag, step]));
  }

  /**
   * Starts fetching the block unless it is loaded, loading, or failed and
   * not due for a retry (see poll). Returns a promise of the decoded block
   * that never rejects: it resolves to undefined on failure.
   */
  load(run, tag, step, block) {
    const key = JSON.stringify([run, tag, step, block]);
    let entry = this.entries.get(key);
    if (entry && !entry.due) return entry.promise;
    // A failed block keeps its error (and so its message on screen) until a retry succeeds.
    entry ??= {value: undefined, error: undefined, bytes: 0, failures: 0, wait: 0};
    entry.due = false;
    const units = [block * BLOCK_UNITS, (block + 1) * BLOCK_UNITS];
    entry.promise = this.fetchBlock(run, tag, step, units).then((value) => {
      if (this.entries.get(key) !== entry) return value;  // forgotten meanwhile
      Object.assign(entry, {value, error: undefined, failures: 0, bytes: value.bytes ?? 0});
      this.bytes += entry.bytes;
      this.headers.set(JSON.stringify([run, tag, step]), value.header);
      this.evict(key);
      this.onLoad();
      return value;
    }, (error) => {
      entry.error = error;
      entry.failures++;
      // Tried again after 1 poll, then 2, 4, ... up to RETRY_CAP_POLLS.
      entry.wait = Math.min(RETRY_CAP_POLLS, 2 ** (entry.failures - 1));
      this.onLoad();
      return undefined;
    });
    this.entries.set(key, entry);
    return entry.promise;
  }

  /**
   * Counts a poll for the failed blocks' backoff; returns how many became
   * due, so that the next `load` of them fetches again (the app calls it
   * when it polls and renders when it returns more than 0).
   */
  poll() {
    let due = 0;
    for (const entry of this.entries.values()) {
      if (entry.error && !entry.due && --entry.wait <= 0) {
        entry.due = true;
        due++;
      }
    }
    return due;
  }

  /** Makes every failed block due at once (a manual change of step or run); returns how many. */
  retryNow() {
    let due = 0;
    for (const entry of this.entries.values()) {
      if (entry.error && !entry.due) {
        entry.due = true;
        due++;
      }
    }
    return due;
  }

  /** Drops least recently used loaded blocks until within budget, never `keep`. */
  evict(keep) {
    for (const [key, entry] of this.entries) {
      if (this.bytes <= this.budget) break;
      if (key === keep || entry.value === undefined) continue;
      this.entries.delete(key);
      this.bytes -= entry.bytes;
    }
  }
}

/** Blocks holding units [start, stop). */
export function blocksOf(start, stop) {
  const blocks = [];
  for (let b = Math.floor(start / BLOCK_UNITS); b * BLOCK_UNITS < stop; b++) blocks.push(b);
  return blocks;
}

const MAX_ANSWERS = 64;

/**
 * Answers of the comparison routes (/change, /drift, ...), by a key the app
 * chooses (e.g. ["drift", run, tag, latest step], so new steps ask again),
 * the most recent MAX_ANSWERS of them. Like Store: fetched once, kept until
 * a failure is forgotten (forgetErrors), onLoad() after each arrives.
 */
export class Answers {
  constructor({onLoad = () => {}} = {}) {
    this.onLoad = onLoad;
    this.entries = new Map();  // JSON key -> {promise, value}; Map order is recency
  }

  /** Promise of the answer to `key` (a value or an Error; never rejects), fetched with fetch() if not yet asked. */
  load(key, fetch) {
    const id = JSON.stringify(key);
    let entry = this.entries.get(id);
    if (entry) {
      this.entries.delete(id);  // most recently used last
    } else {
      entry = {value: undefined};
      entry.promise = fetch().catch((e) => e).then((value) => {
        entry.value = value;
        this.onLoad();
        return value;
      });
    }
    this.entries.set(id, entry);
    if (this.entries.size > MAX_ANSWERS) this.entries.delete(this.entries.keys().next().value);
    return entry.promise;
  }

  /** The answer to `key` (a value, an Error, or undefined while it loads), fetched with fetch() if not yet asked. */
  get(key, fetch) {
    this.load(key, fetch);
    return this.entries.get(JSON.stringify(key)).value;
  }

  /** Forgets failed answers, so they are asked again; returns how many. */
  forgetErrors() {
    let count = 0;
    for (const [id, entry] of this.entries) {
      if (entry.value instanceof Error) {
        this.entries.delete(id);
        count++;
      }
    }
    return count;
  }
}
