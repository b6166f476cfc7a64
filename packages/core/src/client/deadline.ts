/**
 * Deadlines of attempts in flight, on one timer per client instead of one per attempt: a setTimeout
 * and its clearTimeout cost about as much as the rest of the runtime's work on a call.
 */

/**
 * The longest delay a timer holds: Node fires a longer one after 1 ms (with a TimeoutOverflowWarning).
 * Timers for later deadlines are set for this long, and set again when they fire early.
 */
export const MAX_TIMER_MS = 2_147_483_647;

/** Something that ends at `expiresAt` (ms since the epoch) unless removed first. */
export abstract class Expiring {
  expiresAt = 0;
  /** @internal Links of the queue. */
  prev: Expiring | undefined = undefined;
  /** @internal */
  next: Expiring | undefined = undefined;
  /** @internal */
  queued = false;
  /** Called once the deadline has passed, after the item left the queue. */
  abstract expire(): void;
}

/**
 * A list of items sorted by deadline, and one timer armed for the earliest. Attempts of one client
 * mostly share a timeout, so each new deadline goes at the tail and the armed timer stays: the timer is
 * set again only when it fires (once per timeout, not once per call) or when a deadline comes sooner
 * than the one it is armed for. An idle client's timer does not keep the process alive.
 */
export class DeadlineQueue {
  #head: Expiring | undefined = undefined;
  #tail: Expiring | undefined = undefined;
  #timer: ReturnType<typeof setTimeout> | undefined = undefined;
  #armedAt = Number.POSITIVE_INFINITY;
  #referenced = false;

  add(item: Expiring): void {
    let before = this.#tail;
    while (before !== undefined && before.expiresAt > item.expiresAt) before = before.prev;
    item.prev = before;
    item.next = before === undefined ? this.#head : before.next;
    if (item.next === undefined) this.#tail = item;
    else item.next.prev = item;
    if (before === undefined) this.#head = item;
    else before.next = item;
    item.queued = true;
    if (this.#timer === undefined || item.expiresAt < this.#armedAt) this.#arm(item.expiresAt);
    else if (!this.#referenced) {
      this.#timer.ref();
      this.#referenced = true;
    }
  }

  remove(item: Expiring): void {
    if (!item.queued) return;
    item.queued = false;
    if (item.prev === undefined) this.#head = item.next;
    else item.prev.next = item.next;
    if (item.next === undefined) this.#tail = item.prev;
    else item.next.prev = item.prev;
    item.prev = undefined;
    item.next = undefined;
    if (this.#head === undefined && this.#referenced) {
      // biome-ignore lint/style/noNonNullAssertion: referenced only while armed
      this.#timer!.unref();
      this.#referenced = false;
    }
  }

  /** Empties the queue and stops its timer; returns what was in it, for close() to end its own way. */
  drain(): Expiring[] {
    const items: Expiring[] = [];
    while (this.#head !== undefined) {
      items.push(this.#head);
      this.remove(this.#head);
    }
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#armedAt = Number.POSITIVE_INFINITY;
    this.#referenced = false;
    return items;
  }

  #arm(deadline: number): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = setTimeout(fire, Math.min(MAX_TIMER_MS, Math.max(0, deadline - Date.now())), this);
    this.#armedAt = deadline;
    this.#referenced = true;
  }

  /** @internal The timer fired: expires what is due and arms the timer for what is left. */
  fire(): void {
    this.#timer = undefined;
    this.#armedAt = Number.POSITIVE_INFINITY;
    this.#referenced = false;
    const now = Date.now();
    let head = this.#head;
    while (head !== undefined && head.expiresAt <= now) {
      this.remove(head);
      head.expire();
      head = this.#head;
    }
    if (head !== undefined) this.#arm(head.expiresAt);
  }
}

function fire(queue: DeadlineQueue): void {
  queue.fire();
}
