// latest.js: only the latest answer is drawn. A view that may ask again
// before an answer comes (a reload, a refresh, another choice of the
// user's) draws an answer only while it answers the view's latest
// request: an older one answered last would draw over what the newer one
// drew, what the user's newer action asked for.

/**
 * latest counts a view's requests: next() starts one and returns its
 * check, a function true while no newer request was started; now()
 * returns that check for the latest request without starting one (for
 * an action that supersedes none, such as a Check that writes nothing);
 * drop() supersedes every request on its way (none of their answers is
 * drawn).
 */
export function latest() {
  let n = 0;
  return {
    next() {
      const mine = ++n;
      return () => mine === n;
    },
    now() {
      const mine = n;
      return () => mine === n;
    },
    drop() {
      n++;
    },
  };
}

/**
 * latestBy is latest() per key (e.g. per database): a request supersedes
 * only the older ones of its own key.
 */
export function latestBy() {
  const counters = new Map();
  const of = (key) => {
    if (!counters.has(key)) counters.set(key, latest());
    return counters.get(key);
  };
  return {
    next: (key) => of(key).next(),
    drop: (key) => of(key).drop(),
  };
}
