/** The stamped clock: one reading shared by what runs inside a stamped stretch, the clock outside. */
import { describe, expect, it } from "vitest";
import { now, stampNow, unstamp } from "../../common/clock.js";

const busy = (ms: number): void => {
  const until = performance.now() + ms;
  while (performance.now() < until);
};

describe("stamped clock", () => {
  it("inside a stretch gives its stamp; once it ends, the clock again", () => {
    const before = performance.now();
    stampNow();
    let stamped: number;
    try {
      stamped = now();
      expect(stamped).toBeGreaterThanOrEqual(before);
      busy(5);
      expect(now()).toBe(stamped);
    } finally {
      unstamp();
    }
    busy(5);
    const after = now();
    expect(after).toBeGreaterThanOrEqual(stamped + 5);
    busy(2);
    expect(now()).toBeGreaterThan(after);
  });
});
