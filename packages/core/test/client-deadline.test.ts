import { afterEach, describe, expect, test, vi } from "vitest";
import { DeadlineQueue, Expiring, MAX_TIMER_MS } from "../src/client/deadline.js";

class Item extends Expiring {
  constructor(
    readonly name: string,
    readonly log: string[],
    at: number,
  ) {
    super();
    this.expiresAt = at;
  }

  expire(): void {
    this.log.push(this.name);
  }
}

afterEach(() => {
  vi.useRealTimers();
});

describe("deadline queue", () => {
  test("expires items in deadline order on one timer, whatever order they came in", async () => {
    vi.useFakeTimers({ now: 0 });
    const queue = new DeadlineQueue();
    const log: string[] = [];
    const items = [new Item("b", log, 200), new Item("c", log, 300), new Item("a", log, 100), new Item("d", log, 300)];
    for (const item of items) queue.add(item);
    expect(vi.getTimerCount()).toBe(1);
    await vi.advanceTimersByTimeAsync(99);
    expect(log).toEqual([]);
    await vi.advanceTimersByTimeAsync(1);
    expect(log).toEqual(["a"]);
    await vi.advanceTimersByTimeAsync(200);
    expect(log).toEqual(["a", "b", "c", "d"]);
    expect(vi.getTimerCount()).toBe(0);
  });

  test("a removed item never expires; an emptied queue's timer lets the process exit", async () => {
    vi.useFakeTimers({ now: 0 });
    const queue = new DeadlineQueue();
    const log: string[] = [];
    const a = new Item("a", log, 100);
    const b = new Item("b", log, 200);
    queue.add(a);
    queue.add(b);
    queue.remove(a);
    queue.remove(a);
    await vi.advanceTimersByTimeAsync(150);
    expect(log).toEqual([]);
    queue.remove(b);
    await vi.advanceTimersByTimeAsync(100);
    expect(log).toEqual([]);
    expect(vi.getTimerCount()).toBe(0);
  });

  test("keeps its timer while deadlines come in order, and re-arms for a sooner one", async () => {
    vi.useFakeTimers({ now: 0 });
    const setTimeoutSpy = vi.spyOn(globalThis, "setTimeout");
    const queue = new DeadlineQueue();
    const log: string[] = [];
    for (let i = 0; i < 10; i++) {
      const item = new Item(`i${i}`, log, 1000 + i);
      queue.add(item);
      queue.remove(item);
    }
    expect(setTimeoutSpy).toHaveBeenCalledTimes(1);
    queue.add(new Item("soon", log, 10));
    expect(setTimeoutSpy).toHaveBeenCalledTimes(2);
    await vi.advanceTimersByTimeAsync(10);
    expect(log).toEqual(["soon"]);
    const left = queue.drain();
    expect(left).toEqual([]);
    setTimeoutSpy.mockRestore();
  });

  test("a deadline farther than a timer can hold arms the longest timer, and expires when it comes", async () => {
    vi.useFakeTimers({ now: 0 });
    const setTimeoutSpy = vi.spyOn(globalThis, "setTimeout");
    const queue = new DeadlineQueue();
    const log: string[] = [];
    queue.add(new Item("far", log, 2 * MAX_TIMER_MS + 10));
    queue.add(new Item("never", log, Number.POSITIVE_INFINITY));
    // Node fires a timer set for longer after 1 ms: the queue would re-arm it every millisecond.
    expect(setTimeoutSpy.mock.calls.map(([, delay]) => delay)).toEqual([MAX_TIMER_MS]);
    await vi.advanceTimersByTimeAsync(MAX_TIMER_MS);
    expect(log).toEqual([]);
    await vi.advanceTimersByTimeAsync(MAX_TIMER_MS);
    expect(log).toEqual([]);
    await vi.advanceTimersByTimeAsync(10);
    expect(log).toEqual(["far"]);
    expect(setTimeoutSpy.mock.calls.map(([, delay]) => delay)).toEqual([MAX_TIMER_MS, MAX_TIMER_MS, 10, MAX_TIMER_MS]);
    expect(queue.drain()).toHaveLength(1);
    setTimeoutSpy.mockRestore();
  });

  test("drain empties the queue and stops the timer", () => {
    vi.useFakeTimers({ now: 0 });
    const queue = new DeadlineQueue();
    const log: string[] = [];
    queue.add(new Item("a", log, 100));
    queue.add(new Item("b", log, 50));
    expect(queue.drain().map((i) => (i as Item).name)).toEqual(["b", "a"]);
    expect(vi.getTimerCount()).toBe(0);
  });
});
