/**
 * End-to-end tests with hostile programs: programs that exit in every way a
 * process can, are interrupted or killed, crash, fork, run threads past the
 * end of the main module, replace the profiler, recurse to the limit, leave
 * generators and coroutines unfinished, have awkward names and paths, or
 * fight over their standard streams.
 *
 * One table, {@linkcode CASES}: each row is a program under
 * `tests/programs/hostile/`, how it is run, and what the user must see. Every
 * row runs on the oldest and the newest Python present, with every engine the
 * interpreter has (`setprofile`; `monitoring` too from 3.12), and is compared
 * with a plain `python` run of the same program, run the same way:
 *
 * - stdout, stderr (without Panopticon's own `panopticon: …` lines) and the
 *   exit status are the same;
 * - a trace file exists, is UTF-8 and parses as one JSON document with
 *   `traceEvents`, was made by the engine asked for, and holds no frame of
 *   the collector;
 * - the trace is complete, or it is cut short and both the trace
 *   (`otherData.complete: false`) and the terminal (`, cut short` and a
 *   `panopticon: warning:` line) say so, with the slices still open closed at
 *   the last timestamp and marked `args.unfinished`;
 * - nothing is lost quietly: a complete trace that ended normally has no
 *   unfinished slice on the main thread and no dropped event, unless the
 *   terminal warns;
 * - the row's own structural expectations.
 *
 * docs/reliability.md lists every row with what the user sees; keep the two
 * in step.
 */
import assert from "node:assert/strict";
import { collectorOptions, COLLECTORS, type TestCollector } from "./_collectors.ts";
import { oldestAndNewest, type TestPython } from "./_pythons.ts";
import { type Outcome, programStderr, runPanopticon, tempDir } from "./_run.ts";
import {
  encloses,
  flowChains,
  slices,
  threadNames,
  type Trace,
  type TraceEvent,
} from "./_trace.ts";

const ROOT = new URL("..", import.meta.url).pathname;
const MAIN = `${ROOT}main.ts`;
const HOSTILE = `${ROOT}tests/programs/hostile`;
const SETSID = "/usr/bin/setsid";

type Engine = "setprofile" | "monitoring";

/** One interpreter, engine and collector the table runs on. */
interface Setting {
  python: TestPython;
  minor: number;
  engine: Engine;
  collector: TestCollector;
}

/**
 * How a program is run, the same way under plain `python` and under
 * Panopticon:
 *
 * - `run`: to its end, with `stdin` on standard input;
 * - `ctrl-c`: in a process group of its own (`setsid`); once it prints
 *   `ready` and sleeps, SIGINT goes to the whole group, as a terminal sends
 *   it on Ctrl-C;
 * - `ctrl-c-busy`: likewise, but 100 ms after `ready`, while it runs;
 * - `sigterm`: likewise, but SIGTERM goes to the process started (`python`, or
 *   Panopticon, which passes it on), as `kill PID` does;
 * - `sigkill-python`: likewise, but SIGKILL goes to the Python process itself;
 * - `pipe-head`: `… | head -1` in bash, which then prints the program's exit
 *   status from `PIPESTATUS` on stderr.
 */
type How = "run" | "ctrl-c" | "ctrl-c-busy" | "sigterm" | "sigkill-python" | "pipe-head";

/** What a row runs, made afresh in a temporary directory for each run. */
interface Program {
  /** The interpreter's arguments after `python` (the program and its own). */
  args: string[];
  /**
   * A working directory that is not valid UTF-8, as a `printf` format (Deno
   * passes only strings): the run goes through `bash -c 'cd …'`.
   */
  cwdFormat?: string;
  /** Where the trace goes (default: `trace.json` in the temporary directory). */
  output?: string;
}

/** The expectations of a row. */
interface Expect {
  /** The exit status, of plain `python` and of Panopticon alike. */
  code: number;
  /**
   * How stderr is compared with the plain run's: `same`, or `traceback`
   * when where an interrupt lands is up to chance: the last line is the
   * same, and every frame of the traceback is one of the program's.
   *
   * @default {"same"}
   */
  stderr?: "same" | "traceback";
  /** Whether the trace ends with the collector's `end` record. */
  trace: "complete" | "cut short";
  /** `otherData.reason`, for a complete trace. */
  reason?: string;
  /** Names of slices that must be in the trace. */
  recorded?: string[];
  /** Names of slices that must not be in the trace. */
  absent?: string[];
  /** Names of slices on the main thread that must be marked unfinished. */
  unfinished?: string[];
  /** Further checks of the trace. */
  check?: (run: TracedRun) => void;
}

/** A row of the table. */
interface Case {
  /** The test step's name, also the row's name in docs/reliability.md. */
  name: string;
  /** What the user sees: the program's behaviour, the trace, the terminal. */
  sees: string;
  /** Which settings the row runs on (default: all). */
  when?: (setting: Setting) => boolean;
  /**
   * A known limitation (docs/reliability.md says why): on these settings the
   * program's output may differ from a plain run in the way `differs` says,
   * and that is what is checked instead of equality. "nothing lost quietly"
   * is not checked there either.
   */
  limitation?: {
    applies: (setting: Setting) => boolean;
    /**
     * `collector frames`: stderr equals the plain run's once the collector's
     * traceback entries are taken out. `last line`: stdout and the last line
     * of stderr (the exception) equal the plain run's. `exception type`:
     * stdout's last line and the exception's type equal the plain run's.
     */
    differs: "collector frames" | "last line" | "exception type";
  };
  /** How it is run. */
  how?: How;
  /** Standard input, for `run`. */
  stdin?: string;
  /** The program, made in `dir` (a fresh temporary directory). */
  program: (dir: string, setting: Setting) => string[] | Promise<Program>;
  /** What must hold; may depend on the setting. */
  expect: Expect | ((setting: Setting) => Expect);
}

/** What a check sees of a traced run. */
interface TracedRun {
  setting: Setting;
  outcome: Outcome;
  plain: Outcome;
  trace: Trace;
  /** Panopticon's own lines on stderr. */
  panopticon: string[];
  /** The dense id of the main thread. */
  main: number;
}

function minorOf(python: TestPython): number {
  return Number(python.version.split(".")[1]);
}

const prog = (name: string) => `${HOSTILE}/${name}`;

/** The instant events of a trace. */
function instants(trace: Trace): TraceEvent[] {
  return trace.traceEvents.filter((event) => event.ph === "i");
}

/**
 * The guard on the profile function spoke: one instant on the main thread
 * saying where the profile function was replaced, and one warning.
 */
function assertReplacedAt(run: TracedRun, where: RegExp): void {
  const marks = instants(run.trace);
  assert.deepEqual(marks.map((m) => [m.name, m.tid]), [
    ["recording stopped: profile function replaced", run.main],
  ]);
  assert.match(String(marks[0]!.args?.by), where);
  const warnings = run.panopticon.filter((line) => line.includes("replaced the profile function"));
  assert.equal(warnings.length, 1, run.panopticon.join("\n"));
}

/** `lines` lines of text of varying length, for a large standard input. */
function bulkText(lines: number): string {
  let text = "";
  for (let i = 0; i < lines; i++) text += `line ${i} ${"ab".repeat(i % 50)}\n`;
  return text;
}

// --- the table -----------------------------------------------------------------

const CASES: Case[] = [
  // Exits.
  {
    name: "exit: sys.exit(5) from a function",
    sees: "status 5; complete trace, leave() and main() unwound by SystemExit, not unfinished",
    program: () => [prog("exit_sys.py")],
    expect: { code: 5, trace: "complete", reason: "exit", recorded: ["leave", "main", "sys.exit"] },
  },
  {
    name: "exit: os._exit(7) from a function",
    sees: "status 7; complete trace (reason os._exit) with every event: the frames still running " +
      "(leave, main, <module>) are marked unfinished; no warning",
    program: () => [prog("exit_os.py")],
    expect: {
      code: 7,
      trace: "complete",
      reason: "os._exit",
      unfinished: ["leave", "main", "<module>"],
      check: ({ trace }) => assert.deepEqual(slices(trace, "tick").length, 6000, "every call"),
    },
  },
  {
    name: "exit: os._exit called wrongly, the TypeError caught",
    sees: "Python's own TypeError messages and tracebacks; the program goes on and is traced " +
      "to its end",
    program: () => [prog("os_exit_misused.py")],
    // os._exit is wrapped so that it can send the last events first; a
    // TypeError raised through the Python collector's wrapper shows its
    // frame (the native collector's is C, and shows none).
    limitation: { applies: (s) => s.collector === "python", differs: "collector frames" },
    expect: { code: 0, trace: "complete", reason: "exit", recorded: ["no_status", "after"] },
  },
  {
    name: "exit: an uncaught exception",
    sees: "traceback, status 1; complete trace, inner() and outer() unwound, not unfinished",
    program: () => [prog("uncaught.py")],
    expect: { code: 1, trace: "complete", reason: "exit", recorded: ["inner", "outer"] },
  },
  {
    name: "exit: raise KeyboardInterrupt from code",
    sees:
      "KeyboardInterrupt traceback, status 130 (Python ends itself with SIGINT); complete trace",
    program: () => [prog("raise_keyboard_interrupt.py")],
    expect: { code: 130, trace: "complete", reason: "exit", recorded: ["interrupted", "main"] },
  },
  {
    name: "exit: Ctrl-C (SIGINT to the process group) while sleeping",
    sees: "KeyboardInterrupt traceback, status 130; Panopticon survives the SIGINT, finishes the " +
      "trace (complete) and exits 130; wait() and time.sleep end where the interrupt came",
    how: "ctrl-c",
    program: () => [prog("waits.py")],
    expect: {
      code: 130,
      trace: "complete",
      reason: "exit",
      recorded: ["wait", "time.sleep"],
      check: ({ trace }) => {
        const [wait] = slices(trace, "wait");
        const [sleep] = slices(trace, "time.sleep");
        assert(wait && sleep && encloses(wait, sleep), "time.sleep inside wait()");
      },
    },
  },
  {
    name: "exit: Ctrl-C while the program is busy calling functions",
    sees: "KeyboardInterrupt traceback of the program's own frames, status 130; complete, " +
      "loadable trace; recording does not stop before the interrupt",
    how: "ctrl-c-busy",
    program: () => [prog("busy.py")],
    // Python runs the SIGINT handler wherever the main thread is, often in
    // a callback of the Python collector: the KeyboardInterrupt's traceback
    // then shows collector frames. The stream stays whole (signals are held
    // back while a record is sent), so the trace is complete and loadable.
    // The native collector runs no bytecode, so the handler never runs in
    // it; but where the interrupt lands is chance, so the traceback's
    // shape is compared, not its lines. Landing in the collector's own code
    // can change even the exception's line: once in CI (3.13) it read
    // "KeyboardInterrupt:" rather than "KeyboardInterrupt" (not reproduced in
    // 30 runs since): the type is compared.
    limitation: { applies: (s) => s.collector === "python", differs: "exception type" },
    expect: {
      code: 130,
      stderr: "traceback",
      trace: "complete",
      reason: "exit",
      recorded: ["spin", "tick", "len"],
    },
  },
  {
    name: "exit: SIGTERM sent to Panopticon while the program sleeps",
    sees: "status 143 (Panopticon passes the SIGTERM on to the program); native collector: a " +
      "complete trace (reason SIGTERM), <module> and main() unfinished, nothing lost; Python " +
      "collector: cut short with a warning, the events after the last batch lost",
    how: "sigterm",
    program: () => [prog("waits.py")],
    expect: (setting) => ({ code: 143, ...terminated(setting), unfinished: ["<module>", "main"] }),
  },
  {
    name: "exit: SIGKILL to the Python process",
    sees: "status 137; trace cut short with a warning, <module> and main() unfinished; the " +
      "events after the last batch are lost",
    how: "sigkill-python",
    program: () => [prog("waits.py")],
    expect: { code: 137, trace: "cut short", unfinished: ["<module>", "main"] },
  },
  {
    name: "exit: SIGTERM from the program to itself",
    sees: "status 143, not a line more of the program; native collector: a complete trace " +
      "(reason SIGTERM), <module> and main() unfinished; Python collector: cut short with a " +
      "warning, the events after the last batch lost",
    program: () => [prog("sigterm_self.py")],
    expect: (setting) => ({ code: 143, ...terminated(setting), unfinished: ["<module>", "main"] }),
  },
  {
    name: "exit: segmentation fault",
    sees: "status 139; trace cut short with a warning, <module> and main() unfinished; the " +
      "events after the last batch are lost",
    program: () => [prog("segfault.py")],
    expect: { code: 139, trace: "cut short", unfinished: ["<module>", "main"] },
  },

  // Threads.
  {
    name: "threads: a non-daemon thread still running when the main module ends",
    sees: "complete trace; the thread's track holds its whole run, joined at shutdown",
    program: () => [prog("threads_nondaemon.py")],
    expect: {
      code: 0,
      trace: "complete",
      reason: "exit",
      check: (run) => {
        const slow = tidOf(run.trace, "slow");
        const [worker] = slices(run.trace, "slow_worker");
        assert(worker && worker.tid === slow, "slow_worker on the thread's track");
        assert(!isUnfinished(worker), "slow_worker ran to its end");
        assert(end(worker) > end(moduleSlice(run)), "slow_worker outlived <module>");
      },
    },
  },
  {
    name: "threads: a daemon thread still running at exit",
    sees: "complete trace; the daemon thread's frames still open at exit (spin, step, " +
      "time.sleep) are marked unfinished; no warning",
    program: () => [prog("threads_daemon.py")],
    expect: {
      code: 0,
      trace: "complete",
      reason: "exit",
      check: (run) => {
        const spinner = tidOf(run.trace, "spinner");
        const open = unfinishedNames(run.trace, spinner);
        // spin() never returns; step() and time.sleep() are open too unless
        // the exit comes between two iterations (a few microseconds in 5 ms).
        assert(open.includes("spin"), `spin unfinished (unfinished: ${countNames(open)})`);
      },
    },
  },
  {
    name: "threads: threads that end before and after the main module",
    sees: "complete trace; a track per thread (early, starter, late), each slice finished",
    program: () => [prog("threads_lifetimes.py")],
    expect: {
      code: 0,
      trace: "complete",
      reason: "exit",
      check: (run) => {
        const names = [...threadNames(run.trace).values()].sort();
        assert.deepEqual(names, ["MainThread", "early", "late", "starter"]);
        const [short] = slices(run.trace, "short");
        const [late] = slices(run.trace, "late");
        const [starter] = slices(run.trace, "starter");
        assert(short && late && starter, "short, late and starter are traced");
        assert.deepEqual(short.tid, tidOf(run.trace, "early"));
        assert.deepEqual(late.tid, tidOf(run.trace, "late"));
        assert(end(short) < end(moduleSlice(run)), "early ended before <module>");
        assert(end(late) > end(moduleSlice(run)), "late ended after <module>");
        assert(end(starter) < end(late), "late outlived the thread that started it");
        assert.deepEqual(countNames(unfinishedNames(run.trace)), "", "nothing unfinished");
      },
    },
  },

  // fork.
  {
    name: "fork: parent and children print, children exit by sys.exit and os._exit",
    sees: "every output and the children's statuses, status 0; the parent and each child a " +
      "process of the trace (in_child on the child's tracks), an arrow from each posix.fork to " +
      "its child; complete, every event received, no warning",
    program: () => [prog("fork.py")],
    expect: {
      code: 0,
      trace: "complete",
      reason: "exit",
      check: ({ trace }) => {
        const parents = slices(trace, "in_parent");
        assert.deepEqual(parents.length, 2);
        const root = parents[0]!.pid;
        const children = new Set(slices(trace, "in_child").map((slice) => slice.pid));
        assert.equal(children.size, 2, "each child is a process of its own");
        assert.ok(!children.has(root));
        assert.deepEqual(
          instants(trace).map((i) => i.name),
          [],
          "no mark: the children are traced",
        );
        // An arrow leaves each posix.fork call for its child.
        const forks = slices(trace, "posix.fork").filter((slice) => slice.pid === root);
        assert.equal(forks.length, 2);
        for (const fork of forks) assert.ok(fork.flow_out, "an arrow leaves the fork");
      },
    },
  },

  // The program replaces the profiler.
  {
    name: "profiler: sys.setprofile(None) mid-run",
    sees: "setprofile engine: recording of the thread stops there; the trace marks the moment " +
      "(an instant naming the file and line) and closes the frames then open as unfinished; " +
      "the terminal warns once. monitoring engine: unaffected, everything recorded",
    program: () => [prog("setprofile_none.py")],
    expect: (s) => ({
      code: 0,
      trace: "complete",
      reason: "exit",
      recorded: s.engine === "monitoring" ? ["before", "switch_off", "after"] : ["before"],
      check: (run) => {
        if (s.engine === "monitoring") return assert.deepEqual(instants(run.trace), []);
        assert.deepEqual(slices(run.trace, "after"), []);
        assertReplacedAt(run, /setprofile_none\.py:10 \(switch_off\)$/);
      },
    }),
  },
  {
    name: "profiler: the program installs its own sys.setprofile function",
    sees: "the program's profiler sees its calls; setprofile engine: recording stops there, " +
      "the trace marks the moment and closes the frames then open as unfinished, the terminal " +
      "warns once; monitoring engine: unaffected",
    program: () => [prog("setprofile_own.py")],
    expect: (s) => ({
      code: 0,
      trace: "complete",
      reason: "exit",
      // A profile function's own calls are never reported, under either engine.
      recorded: s.engine === "monitoring" ? ["before", "after"] : ["before"],
      absent: ["own_profiler"],
      check: (run) => {
        if (s.engine === "monitoring") return;
        assertReplacedAt(run, /setprofile_own\.py:23 \(main\)$/);
      },
    }),
  },
  {
    name: "profiler: the program claims sys.monitoring's PROFILER_ID",
    sees: "the program gets the tool id and its callbacks run, as without Panopticon; no clash " +
      "(Panopticon records with tool 4 or 3): everything recorded",
    when: (s) => s.minor >= 12,
    program: () => [prog("monitoring_clash.py")],
    expect: {
      code: 0,
      trace: "complete",
      reason: "exit",
      recorded: ["main", "work"],
      check: (run) => assert.deepEqual(instants(run.trace), []),
    },
  },
  {
    name: "profiler: the program claims the sys.monitoring tool id Panopticon records with",
    sees: "the program gets the tool id, as without Panopticon; monitoring engine: recording " +
      "moves to another free tool id and goes on, the trace marks the moment (an instant naming " +
      "the file and line) and the terminal warns once",
    when: (s) => s.minor >= 12,
    program: () => [prog("monitoring_takeover.py")],
    expect: (s) => ({
      code: 0,
      trace: "complete",
      reason: "exit",
      recorded: ["main", "work"],
      check: (run) => {
        assert.equal(slices(run.trace, "work").length, 3, "work() before, during and after");
        if (s.engine === "setprofile") return assert.deepEqual(instants(run.trace), []);
        assert.deepEqual(instants(run.trace).map((i) => [i.name, i.args]), [
          ["recording moved to sys.monitoring tool 3", {
            by: `${HOSTILE}/monitoring_takeover.py:8 (main)`,
          }],
        ]);
        assert.match(
          run.outcome.stderr,
          /panopticon: warning: the program claimed sys\.monitoring tool 4/,
        );
      },
    }),
  },
  {
    name: "profiler: the program switches off the tool id Panopticon records with",
    sees: "monitoring engine: recording stops there; the trace is complete, marks that the tool " +
      "was changed (noticed at exit), and the terminal warns once",
    when: (s) => s.minor >= 12,
    program: () => [prog("monitoring_meddle.py")],
    expect: (s) => ({
      code: 0,
      trace: "complete",
      reason: "exit",
      check: (run) => {
        if (s.engine === "setprofile") {
          assert.equal(slices(run.trace, "work").length, 2);
          return assert.deepEqual(instants(run.trace), []);
        }
        assert.equal(slices(run.trace, "work").length, 1);
        assert.deepEqual(instants(run.trace).map((i) => [i.name, i.args]), [
          ["sys.monitoring tool 4 changed", { by: "at exit" }],
        ]);
        assert.match(
          run.outcome.stderr,
          /panopticon: warning: the program changed sys\.monitoring tool 4/,
        );
      },
    }),
  },
  {
    name: "profiler: the program profiles itself with cProfile",
    sees: "cProfile works as without Panopticon; recording goes on after profile.disable(), " +
      "except before 3.12 under setprofile, where cProfile replaces the profile function: there " +
      "recording stops at profile.enable(), the trace marks it and the terminal warns once",
    program: () => [prog("cprofile.py")],
    expect: (s) => ({
      code: 0,
      trace: "complete",
      reason: "exit",
      check: (run) => {
        if (s.engine === "setprofile" && s.minor < 12) {
          assert.deepEqual(slices(run.trace, "work").length, 0);
          return assertReplacedAt(run, /cprofile\.py:13 \(main\)$/);
        }
        assert.deepEqual(slices(run.trace, "work").length, 2, "work() inside and after cProfile");
        assert.deepEqual(instants(run.trace), []);
      },
    }),
  },

  // Recursion and frames.
  {
    name: "recursion: RecursionError caught",
    sees: "the same message as without Panopticon; recording goes on after the error (after() " +
      "is traced) and the unwound frames are finished, not unfinished",
    program: () => [prog("recursion_caught.py")],
    // The Python collector's profile function needs stack room of its own:
    // under setprofile the RecursionError can be raised inside it, and
    // Python then switches it off. The native collector's is C.
    limitation: {
      applies: (s) => s.collector === "python" && s.engine === "setprofile",
      differs: "last line",
    },
    expect: {
      code: 0,
      trace: "complete",
      reason: "exit",
      check: (run) => {
        assert(
          slices(run.trace, "after").length === 1 || run.panopticon.some(isWarning),
          "after() is traced, or the terminal says why recording stopped",
        );
      },
    },
  },
  {
    name: "recursion: RecursionError uncaught",
    sees: "the same traceback as without Panopticon (same depth, no collector frame), status 1; " +
      "complete trace",
    program: () => [prog("recursion_uncaught.py")],
    // The Python collector's callbacks take stack room: the error comes one
    // to three frames sooner, so the traceback's "repeated N more times"
    // differs; before 3.12, under setprofile, it is raised inside the
    // profile function, whose message ends "in comparison". The native
    // collector's callbacks are C: the same traceback.
    limitation: { applies: (s) => s.collector === "python", differs: "exception type" },
    expect: { code: 1, trace: "complete", reason: "exit", recorded: ["down"] },
  },
  {
    name: "recursion: a stack 10,000 frames deep",
    sees: "complete trace with 10,001 nested down() slices",
    program: () => [prog("deep_stack.py")],
    expect: {
      code: 0,
      trace: "complete",
      reason: "exit",
      check: ({ trace }) => {
        const downs = slices(trace, "down");
        assert.deepEqual(downs.length, 10001);
        for (let i = 1; i < downs.length; i++) {
          assert(encloses(downs[i - 1]!, downs[i]!), `down() #${i} nests in its caller`);
        }
      },
    },
  },
  {
    name: "generators: closed, thrown into, abandoned, left suspended at exit",
    sees: "complete trace; each generator frame one flow chain; the one left suspended at exit " +
      "is one slice, not unfinished; before 3.11, with the Python collector, a generator " +
      "finalised by garbage collection shows no finalising slice (the interpreter calls no " +
      "Python profile function there; the native collector's C one is called)",
    program: () => [prog("generators.py")],
    expect: (s) => ({
      code: 0,
      trace: "complete",
      reason: "exit",
      check: ({ trace }) => {
        const guarded = chainsOf(trace, "guarded");
        // closed, thrown, abandoned (finalised at `del`: no event for a
        // Python profile function before 3.11).
        const finalised = s.minor >= 11 || s.collector === "native";
        assert.deepEqual(guarded.map((c) => c.length), finalised ? [2, 2, 2] : [2, 2]);
        assert.deepEqual(slices(trace, "guarded").length, finalised ? 7 : 6);
        assert.deepEqual(chainsOf(trace, "catcher").map((c) => c.length), [3]);
        for (const chain of [...guarded, ...chainsOf(trace, "catcher")]) wellFormed(chain);
      },
    }),
  },
  {
    name: "coroutines: a coroutine never awaited",
    sees: "the same RuntimeWarning on stderr; complete trace, no slice for the coroutine",
    program: () => [prog("coroutine_never_awaited.py")],
    expect: { code: 0, trace: "complete", reason: "exit", recorded: ["forget"], absent: ["fetch"] },
  },
  {
    name: "coroutines: async generators finalised by asyncio.run",
    sees: "complete trace; each async generator one flow chain whose last slice is its " +
      "finalisation; nothing unfinished",
    program: () => [prog("async_generators.py")],
    expect: {
      code: 0,
      trace: "complete",
      reason: "exit",
      check: ({ trace }) => {
        const chains = chainsOf(trace, "ticker");
        assert.deepEqual(chains.map((c) => c.length).sort((a, b) => a - b), [3, 7]);
        for (const chain of chains) {
          wellFormed(chain);
          assert(chain.every((s) => s.cat === "async_generator"));
        }
        assert.deepEqual(countNames(unfinishedNames(trace)), "", "nothing unfinished");
      },
    },
  },

  // Names and paths.
  {
    name: "paths: a script in a directory with spaces and non-ASCII characters",
    sees: "the same __file__ and argv; the trace (itself written to such a path) names the file " +
      "exactly",
    program: async (dir) => {
      const home = `${dir}/dir with spaces ü/ünïcødé 目录 ✓`;
      await Deno.mkdir(home, { recursive: true });
      await Deno.copyFile(prog("where_am_i.py"), `${home}/où est.py`);
      return { args: [`${home}/où est.py`], output: `${home}/trace ✓.json` };
    },
    expect: {
      code: 0,
      trace: "complete",
      reason: "exit",
      check: (run) => {
        const [where] = slices(run.trace, "where");
        const file = run.plain.stdout.split("\n")[0];
        assert(where && file, "where() is traced");
        assert.deepEqual(where.args?.file, file);
      },
    },
  },
  {
    name: "paths: a working directory whose name is not UTF-8",
    sees: "the program imports from there as usual; the trace is valid UTF-8 and JSON, the " +
      "undecodable byte escaped in the module's file name",
    program: async (dir, setting) => {
      const made = await runCommand(setting.python.path, [
        "-c",
        "import os, sys\n" +
        "target = os.fsencode(sys.argv[1]) + b'/bytes \\xff dir'\n" +
        "os.mkdir(target)\n" +
        "for name in ('main.py', 'helper.py'):\n" +
        "    with open(os.path.join(sys.argv[2], name), 'rb') as source:\n" +
        "        with open(target + b'/' + name.encode(), 'wb') as copy:\n" +
        "            copy.write(source.read())\n",
        dir,
        prog("bytes_dir"),
      ]);
      assert.deepEqual(made.code, 0, made.stderr);
      return { args: ["main.py"], cwdFormat: `${dir}/bytes \\xff dir` };
    },
    expect: {
      code: 0,
      trace: "complete",
      reason: "exit",
      check: ({ trace }) => {
        const [where] = slices(trace, "helper.where");
        assert(where, "helper.where() is traced");
        const file = String(where.args?.file);
        assert(file.includes("/bytes ") && file.endsWith(" dir/helper.py"), file);
      },
    },
  },
  {
    name: "names: non-ASCII function and class names",
    sees: "complete trace; slices named grüße, Ünïcode.método, 函数",
    program: () => [prog("unicode_names.py")],
    expect: {
      code: 0,
      trace: "complete",
      reason: "exit",
      recorded: ["grüße", "Ünïcode.método", "函数"],
    },
  },
  {
    name: "names: exec and eval strings, lambdas, comprehensions",
    sees: "complete trace; made_by_exec and the eval'd lambda with file <string>; lambdas, " +
      "generator expressions, and (before 3.12, which inlines them) comprehensions as slices",
    program: () => [prog("dynamic_code.py")],
    expect: (s) => ({
      code: 0,
      trace: "complete",
      reason: "exit",
      check: ({ trace }) => {
        const [exec] = slices(trace, "made_by_exec");
        assert.deepEqual(exec?.args?.file, "<string>");
        const lambdas = endingWith(trace, "<lambda>");
        assert.deepEqual(lambdas.filter((l) => l.args?.file === "<string>").length, 1);
        assert.deepEqual(lambdas.length, 4, "the eval'd lambda and three calls of square");
        const genexpr = endingWith(trace, "<genexpr>");
        assert(genexpr.length > 0 && genexpr.every((g) => g.cat === "generator"));
        for (const comprehension of ["<listcomp>", "<setcomp>", "<dictcomp>"]) {
          assert.deepEqual(endingWith(trace, comprehension).length, s.minor >= 12 ? 0 : 1);
        }
      },
    }),
  },
  {
    name: "names: the program read from stdin (-)",
    sees: "the same output as `python -`; complete trace, functions with file <stdin>",
    stdin: await Deno.readTextFile(prog("stdin_program.py")),
    program: () => ["-", "a", "b"],
    expect: {
      code: 0,
      trace: "complete",
      reason: "exit",
      check: ({ trace }) => {
        const [fromStdin] = slices(trace, "from_stdin");
        assert.deepEqual(fromStdin?.args?.file, "<stdin>");
      },
    },
  },

  // Standard streams.
  {
    name: "stdio: a program that reads all of stdin",
    sees: "the program gets every byte; complete trace",
    stdin: bulkText(4000),
    program: () => [prog("reads_stdin.py")],
    expect: { code: 0, trace: "complete", reason: "exit", recorded: ["digest"] },
  },
  {
    name: "stdio: stdout closed early (| head -1)",
    sees: "the same BrokenPipeError traceback and exit status 1 (PIPESTATUS) as without " +
      "Panopticon; complete trace",
    how: "pipe-head",
    program: () => [prog("broken_pipe.py")],
    expect: {
      code: 0,
      trace: "complete",
      reason: "exit",
      recorded: ["emit"],
      check: ({ plain }) => {
        assert(plain.stderr.includes("BrokenPipeError"), plain.stderr);
        assert(plain.stderr.endsWith("exit status 1\n"), plain.stderr);
      },
    },
  },
];

// --- reading traces ------------------------------------------------------------

function end(slice: TraceEvent): number {
  return slice.ts + (slice.dur ?? 0);
}

function isUnfinished(slice: TraceEvent): boolean {
  return slice.args?.unfinished === true;
}

function isWarning(line: string): boolean {
  return line.startsWith("panopticon: warning:");
}

function tidOf(trace: Trace, threadName: string): number {
  for (const [tid, name] of threadNames(trace)) if (name === threadName) return tid;
  throw new Error(`no thread named ${threadName}: ${[...threadNames(trace).values()]}`);
}

function moduleSlice(run: TracedRun): TraceEvent {
  const module = slices(run.trace, "<module>").find((s) => s.tid === run.main);
  assert(module, "the program's <module> is traced");
  return module;
}

function unfinishedNames(trace: Trace, tid?: number): string[] {
  return slices(trace).filter((s) => isUnfinished(s) && (tid === undefined || s.tid === tid))
    .map((s) => s.name);
}

/** `names` as `a ×3, b` for a message. */
function countNames(names: string[]): string {
  const counts = new Map<string, number>();
  for (const name of names) counts.set(name, (counts.get(name) ?? 0) + 1);
  return [...counts].map(([name, n]) => n === 1 ? name : `${name} ×${n}`).join(", ");
}

function endingWith(trace: Trace, suffix: string): TraceEvent[] {
  return slices(trace).filter((s) => s.name === suffix || s.name.endsWith(`.${suffix}`));
}

function chainsOf(trace: Trace, name: string): TraceEvent[][] {
  return [...flowChains(trace).values()].filter((chain) => chain[0]?.name === name);
}

function wellFormed(chain: TraceEvent[]): void {
  assert(chain.length >= 2, "a chain joins at least two slices");
  assert(chain[0]!.flow_out && !chain[0]!.flow_in, "a chain starts with flow_out only");
  assert(chain[chain.length - 1]!.flow_in, "a chain ends with flow_in");
  for (let i = 1; i < chain.length; i++) {
    assert(end(chain[i - 1]!) <= chain[i]!.ts + 1e-6, "slices of one frame do not overlap");
  }
}

/**
 * Asserts that two tracebacks of the same program agree where chance allows:
 * the same last line (the exception), and only the program's own frames.
 */
function assertSameTraceback(traced: string, plain: string, file: string): void {
  const lastLine = (text: string) => text.trimEnd().split("\n").at(-1);
  assert.deepEqual(lastLine(traced), lastLine(plain), `the exception differs:\n${traced}`);
  for (const frame of traced.matchAll(/^ {2}File "([^"]*)"/gm)) {
    assert.deepEqual(frame[1], file, `a frame that is not the program's:\n${traced}`);
  }
}

/** Reads the trace as Perfetto would: UTF-8, one JSON document. */
async function loadTrace(path: string, panopticonSaid: string): Promise<Trace> {
  let bytes: Uint8Array;
  try {
    bytes = await Deno.readFile(path);
  } catch (error) {
    throw new Error(`no trace file (${error}); panopticon said:\n${panopticonSaid}`);
  }
  const text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  const trace = JSON.parse(text) as Trace;
  assert(Array.isArray(trace.traceEvents), "the trace has traceEvents");
  return trace;
}

// --- running -------------------------------------------------------------------

async function runCommand(
  command: string,
  args: string[],
  options: { stdin?: string } = {},
): Promise<Outcome> {
  const child = new Deno.Command(command, {
    args,
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const writer = child.stdin.getWriter();
  const written = (async () => {
    // The program may exit without reading all of it.
    if (options.stdin) await writer.write(new TextEncoder().encode(options.stdin)).catch(() => {});
    await writer.close().catch(() => {});
  })();
  const [output] = await Promise.all([child.output(), written]);
  const decoder = new TextDecoder();
  return {
    code: output.code,
    stdout: decoder.decode(output.stdout),
    stderr: decoder.decode(output.stderr),
  };
}

/** The pid of the Python process among the children of `parent`. */
async function pythonChildOf(parent: number): Promise<number> {
  for await (const entry of Deno.readDir("/proc")) {
    if (!/^\d+$/.test(entry.name)) continue;
    const stat = await Deno.readTextFile(`/proc/${entry.name}/stat`).catch(() => "");
    // pid (comm) state ppid …; comm may hold spaces and parentheses.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    if (Number(fields[1]) === parent && stat.includes("(python")) return Number(entry.name);
  }
  throw new Error(`no Python process under ${parent}`);
}

/** Resolves once process `pid` is asleep (state `S`) in two polls in a row. */
async function untilSleeping(pid: number): Promise<void> {
  let asleep = 0;
  for (let poll = 0; poll < 500 && asleep < 2; poll++) {
    await new Promise((resolve) => setTimeout(resolve, 5));
    const stat = await Deno.readTextFile(`/proc/${pid}/stat`).catch(() => "");
    asleep = stat.slice(stat.lastIndexOf(")") + 2).startsWith("S") ? asleep + 1 : 0;
  }
}

/**
 * Starts `command args` in a new process group, waits for `ready` on its
 * stdout, sends the signal `how` calls for, and collects the rest.
 */
async function runInterrupted(
  how: "ctrl-c" | "ctrl-c-busy" | "sigterm" | "sigkill-python",
  command: string,
  args: string[],
  traced: boolean,
): Promise<Outcome & { signal: Deno.Signal | null }> {
  // setsid execs the command (a child of Deno leads no group), so the pid is
  // the command's and the new group's.
  const child = new Deno.Command(SETSID, {
    args: [command, ...args],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const stderr = new Response(child.stderr).text();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let stdout = "";
  let settled = false;
  const status = child.status.finally(() => settled = true);
  try {
    while (!stdout.includes("ready\n")) {
      const { value, done } = await reader.read();
      if (done) break;
      stdout += value;
    }
    if (stdout.includes("ready\n")) {
      const python = traced ? await pythonChildOf(child.pid) : child.pid;
      if (how === "ctrl-c-busy") {
        await new Promise((resolve) => setTimeout(resolve, 100));
      } else {
        // "ready" comes just before the sleep: a signal sent at once could
        // land in print() and change the traceback.
        await untilSleeping(python);
      }
      if (how === "ctrl-c" || how === "ctrl-c-busy") Deno.kill(-child.pid, "SIGINT");
      else if (how === "sigterm") Deno.kill(child.pid, "SIGTERM");
      else Deno.kill(python, "SIGKILL");
    }
    for (let next = await reader.read(); !next.done; next = await reader.read()) {
      stdout += next.value;
    }
  } finally {
    // Leave no program sleeping behind a failed step.
    if (!settled) {
      try {
        Deno.kill(-child.pid, "SIGKILL");
      } catch {
        // It ended in the meantime.
      }
    }
  }
  const { code, signal } = await status;
  return { code, stdout, stderr: await stderr, signal };
}

async function runAs(
  kase: Case,
  program: Program,
  command: string,
  args: string[],
  traced: boolean,
): Promise<Outcome> {
  const how = kase.how ?? "run";
  if (how === "ctrl-c" || how === "ctrl-c-busy" || how === "sigterm" || how === "sigkill-python") {
    return await runInterrupted(how, command, args, traced);
  }
  if (how === "pipe-head") {
    return await runCommand("bash", [
      "-c",
      '"$@" | head -1; echo "exit status ${PIPESTATUS[0]}" >&2',
      "bash",
      command,
      ...args,
    ]);
  }
  if (program.cwdFormat !== undefined) {
    return await runCommand("bash", [
      "-c",
      'cd "$(printf "$0")" && exec "$@"',
      program.cwdFormat,
      command,
      ...args,
    ], { stdin: kase.stdin });
  }
  return await runCommand(command, args, { stdin: kase.stdin });
}

/**
 * A SIGTERM with its default action: the native collector finishes the
 * stream before the process ends by it; the Python collector cannot (it
 * would have to install a handler the program could see).
 */
function terminated(setting: Setting): Pick<Expect, "trace" | "reason"> {
  return setting.collector === "native"
    ? { trace: "complete", reason: "SIGTERM" }
    : { trace: "cut short" };
}

// --- the checks ------------------------------------------------------------------

async function check(kase: Case, setting: Setting): Promise<void> {
  const dir = await tempDir();
  try {
    const made = await kase.program(dir.path, setting);
    const program: Program = Array.isArray(made) ? { args: made } : made;
    const output = program.output ?? `${dir.path}/trace.json`;
    const expect = typeof kase.expect === "function" ? kase.expect(setting) : kase.expect;
    const [plain, outcome] = await Promise.all([
      runAs(kase, program, setting.python.path, program.args, false),
      runAs(kase, program, Deno.execPath(), [
        "run",
        "-A",
        MAIN,
        "--python",
        setting.python.path,
        ...collectorOptions(setting.collector),
        "--engine",
        setting.engine,
        "-o",
        output,
        ...program.args,
      ], true),
    ]);
    const said = outcome.stderr.split("\n").filter((line) => line.startsWith("panopticon: "));

    // The program is unchanged.
    const limited = kase.limitation?.applies(setting) ? kase.limitation.differs : undefined;
    assert.deepEqual(plain.code, expect.code, `the plain run's status:\n${plain.stderr}`);
    if (limited === "last line" || limited === "exception type") {
      const exception = (text: string) =>
        limited === "last line" ? lastLine(text) : lastLine(text).split(":")[0];
      assert.deepEqual(lastLine(outcome.stdout), lastLine(plain.stdout), "stdout's last line");
      assert.deepEqual(
        exception(programStderr(outcome.stderr)),
        exception(plain.stderr),
        "the exception differs",
      );
    } else if (limited === "collector frames") {
      assert.deepEqual(outcome.stdout, plain.stdout, "stdout differs");
      assert.deepEqual(
        withoutCollectorFrames(programStderr(outcome.stderr)),
        plain.stderr,
        "stderr differs beyond the collector's traceback entries",
      );
    } else {
      assert.deepEqual(outcome.stdout, plain.stdout, "stdout differs");
    }
    if (limited !== undefined) {
      // Checked above.
    } else if ((expect.stderr ?? "same") === "same") {
      assert.deepEqual(programStderr(outcome.stderr), plain.stderr, "stderr differs");
    } else {
      assertSameTraceback(programStderr(outcome.stderr), plain.stderr, program.args[0]!);
    }
    assert.deepEqual(outcome.code, plain.code, `exit status differs:\n${outcome.stderr}`);

    // A loadable trace, made by the engine asked for, with no collector frame.
    const trace = await loadTrace(output, outcome.stderr);
    const other = trace.otherData ?? {};
    assert.deepEqual(other.engine, setting.engine, "the engine asked for");
    assert.deepEqual(other.collector, setting.collector, "the collector asked for");
    assert.deepEqual(other.python, setting.python.version);
    for (const slice of slices(trace)) {
      assert(!String(slice.args?.file ?? "").includes("sitecustomize"), "a collector frame");
      assert((slice.dur ?? 0) >= 0, `${slice.name} has a negative duration`);
    }
    const main = [...threadNames(trace)].find(([, name]) => name === "MainThread")?.[0];
    assert(main !== undefined, "a MainThread track");
    const run: TracedRun = { setting, outcome, plain, trace, panopticon: said, main };

    // Complete, or cut short and saying so.
    const summary = said.find((line) => line.startsWith("panopticon: wrote "));
    assert(
      summary,
      `no summary line from panopticon (killed by ${
        "signal" in outcome ? outcome.signal : null
      }):\n${outcome.stderr}`,
    );
    if (expect.trace === "complete") {
      assert.deepEqual(other.complete, true, `the trace is complete:\n${outcome.stderr}`);
      assert(!summary.includes("cut short"), summary);
      if (expect.reason !== undefined) assert.deepEqual(other.reason, expect.reason);
    } else {
      assert.deepEqual(other.complete, false, "the trace says it was cut short");
      assert(summary.includes(", cut short"), summary);
      assert(said.some(isWarning), `a warning on the terminal:\n${outcome.stderr}`);
      const last = Math.max(...slices(trace).map(end));
      for (const slice of slices(trace).filter(isUnfinished)) {
        assert(Math.abs(end(slice) - last) < 1e-3, `${slice.name} closed at the last timestamp`);
      }
    }

    // Nothing lost quietly.
    if (limited === undefined) {
      if (!said.some(isWarning)) {
        assert.deepEqual(other.dropped, 0, "events dropped without a warning");
        if (other.complete === true) {
          assert.deepEqual(other.events, other.recorded, "events lost without a warning");
        }
        if (other.complete === true && other.reason === "exit") {
          const open = unfinishedNames(trace, main);
          assert(
            open.length === 0,
            `a complete trace marks ${open.length} main-thread slices unfinished without a ` +
              `warning: ${countNames(open)}`,
          );
        }
      }
    }

    // The row's own expectations.
    for (const name of expect.recorded ?? []) {
      assert(slices(trace, name).length > 0, `no slice named ${name}`);
    }
    for (const name of expect.absent ?? []) {
      assert.deepEqual(slices(trace, name).length, 0, `a slice named ${name}`);
    }
    const open = unfinishedNames(trace, main);
    for (const name of expect.unfinished ?? []) {
      assert(
        open.includes(name),
        `${name} not marked unfinished (unfinished: ${countNames(open)})`,
      );
    }
    expect.check?.(run);
  } finally {
    await dir.remove();
  }
}

/** The last non-empty line of a text. */
function lastLine(text: string): string {
  return text.trimEnd().split("\n").pop() ?? "";
}

/**
 * A traceback without the collector's entries: each `File ".../sitecustomize.py"`
 * line with the source lines under it (more indented, or `~~~^^^` markers).
 */
function withoutCollectorFrames(text: string): string {
  const kept: string[] = [];
  let skipping = false;
  for (const line of text.split(/(?<=\n)/)) {
    if (/^ {2}File ".*sitecustomize\.py", line \d+, in /.test(line)) {
      skipping = true;
      continue;
    }
    if (skipping && /^ {4}/.test(line)) continue;
    skipping = false;
    kept.push(line);
  }
  return kept.join("");
}

// --- the tests ------------------------------------------------------------------

// Runs only the rows whose name contains this text (`deno test --filter`
// selects tests, not steps), e.g. PANOPTICON_TEST_CASE=recursion.
const ONLY = Deno.env.get("PANOPTICON_TEST_CASE") ?? "";

for (const python of oldestAndNewest()) {
  for (const collector of COLLECTORS) {
    const minor = minorOf(python);
    const engines: Engine[] = minor >= 12 ? ["monitoring", "setprofile"] : ["setprofile"];
    for (const engine of engines) {
      const setting: Setting = { python, minor, engine, collector };
      Deno.test(`hostile programs on Python ${python.version} (${collector} collector, ${engine})`, async (t) => {
        for (const kase of CASES) {
          if (!kase.name.includes(ONLY) || (kase.when && !kase.when(setting))) continue;
          await t.step(kase.name, () => check(kase, setting));
        }
      });
    }
  }
}

for (const python of oldestAndNewest()) {
  for (const collector of COLLECTORS) {
    Deno.test(`a full disk, on Python ${python.version} (${collector} collector): a clear error, the program not held up`, async () => {
      // /dev/full fails every write with ENOSPC, as a full disk does. It is
      // reached through a link, which is what Panopticon removes afterwards.
      const dir = await tempDir();
      try {
        const output = `${dir.path}/trace.json`;
        await Deno.symlink("/dev/full", output);
        const outcome = await runPanopticon([
          "--python",
          python.path,
          ...collectorOptions(collector),
          "-o",
          output,
          prog("many_calls.py"),
        ]);
        assert.equal(outcome.stdout, "finished 300000\n", "the program ran to its end");
        assert.equal(outcome.code, 1, outcome.stderr);
        assert.match(
          outcome.stderr,
          /^panopticon: warning: the trace channel closed \(.*\): recording stopped$/m,
        );
        assert.match(
          outcome.stderr,
          new RegExp(
            `^error: could not write the trace to ${output}: No space left on device$`,
            "m",
          ),
        );
        assert.equal(
          await Deno.lstat(output).then(() => true, () => false),
          false,
          "the link is removed",
        );
        assert.ok((await Deno.stat("/dev/full")).isCharDevice);
      } finally {
        await dir.remove();
      }
    });
  }
}
