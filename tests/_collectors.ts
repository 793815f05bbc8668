/**
 * The collectors the end-to-end tests run with: the native one (built for
 * each interpreter, as the command builds it) and the Python one. Every
 * end-to-end test runs on both, and says which in its name.
 */

/** A collector, as `--collector` names it. */
export type TestCollector = "native" | "python";

/** Both collectors, the default first. */
export const COLLECTORS: readonly TestCollector[] = ["native", "python"];

/** Panopticon's options that choose `collector`. */
export function collectorOptions(collector: TestCollector): string[] {
  return ["--collector", collector];
}
