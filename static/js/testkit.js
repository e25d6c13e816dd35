// testkit.js: what the in-browser JS unit suites (*_test.js) share: a
// seeded random generator, so that a failure repeats, and the running of
// cases into the [{name, pass, got, want}] results the Go browser test
// (runJSTests in ui_test.go) reads.

/** rng is a seeded xorshift generator of numbers in [0, 1). */
export function rng(seed) {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) / 4294967296;
  };
}

/** attempt runs f, turning a throw into its text ("threw ..."). */
export function attempt(f) {
  try {
    return f();
  } catch (e) {
    return "threw " + e;
  }
}

/** runFixed runs cases [{name, run, want}]: each passes when run() returns want. */
export function runFixed(cases) {
  return cases.map((c) => {
    const got = attempt(c.run);
    return { name: c.name, pass: got === c.want, got, want: c.want };
  });
}
