/**
 * Perfetto's trace processor, the engine of ui.perfetto.dev, for tests that
 * load a trace into a real viewer: `tp_query` (`.ci/viewer/tp_query.cc`),
 * set up by `.ci/viewer/setup.sh`, found at `$PANOPTICON_TP_QUERY` or
 * `$VIEWERS_HOME/bin/tp_query` (`/tmp/viewers` by default).
 *
 * When it is missing, {@linkcode VIEWER} says why: the tests that need it
 * are then registered as ignored, and say so on the console, rather than
 * passing without having run.
 */

/** Where `tp_query` is, or why it cannot run. */
export type Viewer = { path: string } | { missing: string };

/** The result of one query: rows of column name to value, as text ("[NULL]" for null). */
export type Rows = Record<string, string>[];

function findViewer(): Viewer {
  const path = Deno.env.get("PANOPTICON_TP_QUERY") ??
    `${Deno.env.get("VIEWERS_HOME") ?? "/tmp/viewers"}/bin/tp_query`;
  try {
    // Without arguments it prints its usage and exits with 2: it runs, and
    // its library loads.
    const output = new Deno.Command(path, { stdout: "null", stderr: "null" }).outputSync();
    if (output.code === 2) return { path };
    return { missing: `${path} exits with ${output.code} (its library is missing?)` };
  } catch {
    return { missing: `${path} not found` };
  }
}

/** The trace processor, looked for once per test process. */
export const VIEWER: Viewer = findViewer();

/** Ignore a test that needs the viewer when there is none, saying so once per file. */
export function viewerIgnored(file: string): boolean {
  if ("path" in VIEWER) return false;
  console.log(
    `${file}: Perfetto's trace processor is not available (${VIEWER.missing}): the tests that ` +
      "load traces into it are IGNORED, not passed. Set it up with .ci/viewer/setup.sh " +
      "(needs apt-get), or point PANOPTICON_TP_QUERY at tp_query.",
  );
  return true;
}

/** What loading a trace into the trace processor gave. */
export interface Loaded {
  /** Whether it parsed; the message if not. */
  parsed: boolean;
  message?: string;
  /** Each query's rows, in order. */
  results: Rows[];
}

/**
 * Loads `trace` into the trace processor and runs `queries` on it.
 *
 * @throws {Error} if there is no viewer, or a query fails.
 */
export async function query(trace: string, ...queries: string[]): Promise<Loaded> {
  if (!("path" in VIEWER)) throw new Error(`no trace processor: ${VIEWER.missing}`);
  const output = await new Deno.Command(VIEWER.path, {
    args: [trace, ...queries],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const lines = new TextDecoder().decode(output.stdout).trim().split("\n").filter(Boolean)
    .map((line) => JSON.parse(line));
  const head = lines[0] as { parse: string; message?: string } | undefined;
  if (head === undefined) {
    throw new Error(`tp_query printed nothing: ${new TextDecoder().decode(output.stderr)}`);
  }
  const results: Rows[] = [];
  for (
    const line of lines.slice(1) as {
      sql: string;
      error?: string;
      columns: string[];
      rows: string[][];
    }[]
  ) {
    if (line.error !== undefined) throw new Error(`query failed: ${line.sql}: ${line.error}`);
    results.push(
      line.rows.map((row) => Object.fromEntries(line.columns.map((c, i) => [c, row[i]!]))),
    );
  }
  return { parsed: head.parse === "ok", message: head.message, results };
}

/** The statistics of severity error or data loss that are not zero: what went wrong in the import. */
export const ERROR_STATS =
  "select name, idx, severity, value from stats where value > 0 and severity in ('error', 'data_loss') order by name";
