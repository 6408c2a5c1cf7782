/**
 * First come, first served turns. `take(waitMs)` resolves with the function that ends the turn,
 * or undefined if the turns before it did not end within `waitMs` (it then gives up its place
 * without holding up the turns after it).
 */
export function createTurnQueue() {
  let last: Promise<void> = Promise.resolve();
  return {
    async take(waitMs: number): Promise<(() => void) | undefined> {
      let end!: () => void;
      const mine = new Promise<void>((resolve) => (end = resolve));
      const before = last;
      last = before.then(() => mine);
      let timer: NodeJS.Timeout | undefined;
      const started = await Promise.race([
        before.then(() => true),
        new Promise<false>((resolve) => (timer = setTimeout(resolve, waitMs, false))),
      ]);
      clearTimeout(timer);
      if (started) return end;
      end();
      return undefined;
    },
  };
}
