/// <reference no-default-lib="true" />
/// <reference lib="deno.worker" />
/**
 * The sandbox of `fuzz_test.ts`: runs one conversion per message and posts
 * back how it ended. Conversions run here, not in the test's own isolate,
 * so that one that never ends, even in a synchronous loop that no timer
 * can interrupt, is caught by the test's watchdog, which terminates this
 * worker.
 */

import {
  convert,
  type ConvertOptions,
  ProtocolError,
  type ProtocolRecord,
  toCatapult,
} from "../mod.ts";

/** One conversion: NDJSON chunks through `convert`, or records through `toCatapult`. */
export interface FuzzJob {
  input: { chunks: Uint8Array[] } | { records: unknown[] };
  /** Passed as the `maxDepth` option when the key is present, even if undefined. */
  maxDepth?: number;
}

/** How a conversion ended: the output text either way, and the error if it failed. */
export type FuzzOutcome =
  | {
    status: "resolved";
    text: string;
    warnings: string[];
    /** `convert`'s summary; `toCatapult` has none. */
    summary?: Record<string, unknown>;
  }
  | {
    status: "rejected";
    text: string;
    warnings: string[];
    name: string;
    message: string;
    /** Whether the error is a `ProtocolError`, its `line` and its `byte` in a binary frame. */
    protocolError: boolean;
    line?: number;
    byte?: number;
    stack?: string;
  };

self.onmessage = async ({ data }: MessageEvent<FuzzJob>) => {
  self.postMessage(await run(data));
};

async function run(job: FuzzJob): Promise<FuzzOutcome> {
  const warnings: string[] = [];
  const options: ConvertOptions = { onWarning: (message) => warnings.push(message) };
  if ("maxDepth" in job) options.maxDepth = job.maxDepth;
  let text = "";
  try {
    if ("chunks" in job.input) {
      const decoder = new TextDecoder();
      const summary = await convert(
        ReadableStream.from(job.input.chunks),
        new WritableStream({
          write: (chunk) => void (text += decoder.decode(chunk, { stream: true })),
        }),
        options,
      );
      return { status: "resolved", text, warnings, summary: { ...summary } };
    }
    const records = ReadableStream.from(job.input.records as ProtocolRecord[]);
    for await (const piece of toCatapult(records, options)) text += piece;
    return { status: "resolved", text, warnings };
  } catch (error) {
    return {
      status: "rejected",
      text,
      warnings,
      name: error instanceof Error ? error.name : typeof error,
      message: error instanceof Error ? error.message : String(error),
      protocolError: error instanceof ProtocolError,
      line: error instanceof ProtocolError ? error.line : undefined,
      byte: error instanceof ProtocolError ? error.byte : undefined,
      stack: error instanceof Error ? error.stack : undefined,
    };
  }
}
