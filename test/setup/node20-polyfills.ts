/**
 * matrix-js-sdk 43 calls Promise.withResolvers (Node 22+). Axon runs on Node 20, and so do its
 * tests; this gives the SDK what it expects there. Nothing of Axon's own code relies on it.
 */
if (!('withResolvers' in Promise)) {
  Object.assign(Promise, {
    withResolvers<T>() {
      let resolve!: (v: T) => void;
      let reject!: (e: unknown) => void;
      const promise = new Promise<T>((res, rej) => {
        resolve = res;
        reject = rej;
      });
      return { promise, resolve, reject };
    },
  });
}
export {};
