/** Poll `cond` every 20 ms until it holds; throws after `ms` (tests never wait forever). */
export async function waitFor(cond: () => boolean, ms = 20_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('timed out waiting');
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Run `close`, failing (never hanging) when it does not end within `ms`: an after hook or
 * teardown that uses it cannot hold the run until ava's global timeout. */
export async function bounded(
  what: string,
  close: () => Promise<unknown>,
  ms = 15_000,
): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<void>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not close within ${ms} ms`)), ms);
  });
  try {
    await Promise.race([close(), late]);
  } finally {
    clearTimeout(timer);
  }
}
