/**
 * The Python interpreters the end-to-end tests run on: every pyenv version
 * from 3.8 up that is present, or the colon-separated list in
 * `PANOPTICON_TEST_PYTHONS`, or else `python3` from PATH.
 */

/** One interpreter the end-to-end tests run on. */
export interface TestPython {
  /** Path of the executable. */
  path: string;
  /** `major.minor.micro`, as the interpreter reports it. */
  version: string;
}

function run(command: string, args: string[]): string | undefined {
  try {
    const output = new Deno.Command(command, { args, stdout: "piped", stderr: "null" })
      .outputSync();
    return output.success ? new TextDecoder().decode(output.stdout).trim() : undefined;
  } catch {
    return undefined;
  }
}

function versionOf(path: string): string | undefined {
  return run(path, ["-c", "import sys; print('%d.%d.%d' % sys.version_info[:3])"]);
}

function isSupported(version: string): boolean {
  const [major, minor] = version.split(".").map(Number);
  return major === 3 && (minor ?? 0) >= 8;
}

function candidatePaths(): string[] {
  const listed = Deno.env.get("PANOPTICON_TEST_PYTHONS");
  if (listed) return listed.split(":").filter((path) => path !== "");
  const root = run("pyenv", ["root"]);
  const paths: string[] = [];
  if (root) {
    try {
      for (const entry of Deno.readDirSync(`${root}/versions`)) {
        if (/^\d+\.\d+\.\d+$/.test(entry.name)) {
          paths.push(`${root}/versions/${entry.name}/bin/python`);
        }
      }
    } catch {
      // No versions directory: fall back to python3 below.
    }
  }
  return paths.length > 0 ? paths : ["python3"];
}

function byVersion(a: TestPython, b: TestPython): number {
  const pa = a.version.split(".").map(Number);
  const pb = b.version.split(".").map(Number);
  for (let i = 0; i < 3; i++) {
    const d = (pa[i] ?? 0) - (pb[i] ?? 0);
    if (d !== 0) return d;
  }
  return 0;
}

/** Finds the interpreters once; the order is oldest first. */
export function findTestPythons(): TestPython[] {
  const found: TestPython[] = [];
  for (const path of candidatePaths()) {
    const version = versionOf(path);
    if (version && isSupported(version)) found.push({ path, version });
  }
  return found.sort(byVersion);
}

/** The interpreters found, computed once per test process. */
export const TEST_PYTHONS: readonly TestPython[] = findTestPythons();

/** The oldest and the newest interpreter (one entry when only one is present). */
export function oldestAndNewest(): TestPython[] {
  const first = TEST_PYTHONS[0];
  const last = TEST_PYTHONS[TEST_PYTHONS.length - 1];
  if (!first || !last) return [];
  return first === last ? [first] : [first, last];
}
