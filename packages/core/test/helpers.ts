import { expect } from "vitest";
import { GantryError } from "../src/index.js";

/** The coded error a synchronous step throws (a bootstrap check, a reader). */
export function thrown(fn: () => unknown): GantryError {
  try {
    fn();
  } catch (error) {
    expect(error).toBeInstanceOf(GantryError);
    return error as GantryError;
  }
  throw new Error("expected a GantryError");
}

/** The coded error a promise rejects with. */
export async function rejected(promise: Promise<unknown>): Promise<GantryError> {
  const error = await promise.then(
    () => {
      throw new Error("expected a GantryError");
    },
    (caught: unknown) => caught,
  );
  expect(error).toBeInstanceOf(GantryError);
  return error as GantryError;
}

/** A promise and the function that settles it: for waiting on events instead of sleeping. */
export function signal<T = void>() {
  let resolve!: (value: T) => void;
  const promise = new Promise<T>((r) => {
    resolve = r;
  });
  return { promise, resolve };
}
