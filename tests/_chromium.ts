/**
 * A real headless Chromium (Debian's, at $CHROMIUM or /usr/bin/chromium)
 * driven by playwright-core from the npm registry, run as its own process
 * (`deno run -A --no-lock tests/_chromium.ts …`, so that the project has
 * no lock file or type check to keep for it) by `view_browser_test.ts`:
 *
 * - `--check` prints nothing and exits with 0 when both are there, else
 *   prints why not and exits with 3;
 * - `ADDRESS` opens the Perfetto UI's address `ADDRESS`
 *   (`https://ui.perfetto.dev/#!/?url=…`) in a page of that origin (the
 *   UI itself is not fetched: this machine has no Internet, so the page is
 *   ours, under the UI's origin), whose script fetches what `url` names as
 *   the UI does, and another path of the same server first. Before that,
 *   another page goes to the trace's address through another host name
 *   that resolves to 127.0.0.1 (as a web page rebinding a name of its own
 *   to this machine would). It prints one JSON object: what each got.
 */

/** What the page found; printed as JSON. */
export interface PageResult {
  /** The status of the trace's fetch, its length and SHA-256 (hex). */
  status?: number;
  length?: number;
  sha256?: string;
  /** The status of a fetch of `/status` on the same server (the UI asks for it). */
  otherPath?: number | string;
  /** The status of a navigation to the trace's path through the host name `rebound.example`. */
  otherHost?: number | string;
  error?: string;
}

const CHROMIUM = Deno.env.get("CHROMIUM") ?? "/usr/bin/chromium";
// Not a literal: `deno check` has no npm package to resolve.
const PLAYWRIGHT = ["npm:playwright-core", "1.65.1"].join("@");

/** The flags the machine's notes give for Chromium as root without a network. */
const FLAGS = [
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  // Another name for this machine, for a page that tries it.
  "--host-resolver-rules=MAP rebound.example 127.0.0.1",
];

/** The page at the UI's origin: fetches as the UI does, and records what it got. */
const PAGE = `<!doctype html><title>Perfetto UI (test)</title><script>
(async () => {
  const hash = location.hash;
  const url = new URLSearchParams(hash.slice(hash.indexOf("?") + 1)).get("url");
  const traceUrl = new URL(url);
  const result = {};
  const status = async (address) => {
    try {
      return (await fetch(address)).status;
    } catch (error) {
      return String(error);
    }
  };
  result.otherPath = await status(new URL("/status", traceUrl).href);
  const response = await fetch(url);
  const bytes = new Uint8Array(await response.arrayBuffer());
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  result.status = response.status;
  result.length = bytes.length;
  result.sha256 = Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
  window.result = result;
})().catch((error) => { window.result = { error: String(error) }; });
</script>`;

async function main(args: string[]): Promise<number> {
  try {
    const info = await Deno.stat(CHROMIUM);
    if (!info.isFile) throw new Error("not a file");
  } catch {
    console.log(`no Chromium at ${CHROMIUM} (apt-get install chromium, or set CHROMIUM)`);
    return 3;
  }
  let playwright: typeof import("./_playwright.d.ts");
  try {
    playwright = await import(PLAYWRIGHT);
  } catch (error) {
    console.log(`cannot load ${PLAYWRIGHT} from the npm registry: ${error}`);
    return 3;
  }
  if (args[0] === "--check") return 0;
  const address = args[0]!;
  const profile = await Deno.makeTempDir({ prefix: "panopticon-chromium-" });
  const context = await playwright.chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: FLAGS,
  });
  try {
    // What a user allows when the browser asks whether ui.perfetto.dev may
    // connect to devices on the local network.
    await context.grantPermissions(["local-network-access"], { origin: "https://ui.perfetto.dev" });
    const traceUrl = new URL(
      new URLSearchParams(new URL(address).hash.replace(/^#!\/\?/, "")).get("url")!,
    );
    const rebound = await context.newPage();
    const response = await rebound.goto(
      `http://rebound.example:${traceUrl.port}${traceUrl.pathname}`,
    );
    const otherHost = response === null ? "no response" : response.status();
    await rebound.close();
    const page = await context.newPage();
    await page.route(
      "https://ui.perfetto.dev/**",
      (route) => route.fulfill({ status: 200, contentType: "text/html", body: PAGE }),
    );
    await page.goto(address);
    await page.waitForFunction("window.result !== undefined", undefined, { timeout: 30_000 });
    const result = { ...await page.evaluate("window.result") as PageResult, otherHost };
    console.log(JSON.stringify(result));
    return 0;
  } finally {
    await context.close();
    await Deno.remove(profile, { recursive: true }).catch(() => {});
  }
}

if (import.meta.main) Deno.exit(await main(Deno.args));
