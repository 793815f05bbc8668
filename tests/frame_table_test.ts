import assert from "node:assert/strict";
import { FrameTable } from "../src/_frame_table.ts";

Deno.test("FrameTable behaves as a Map of frame ids, in the order keys were first set", () => {
  // Random sets, deletes and lookups, checked against a Map after each one:
  // keys that collide (aligned addresses), 0 and -0, ids past 2^48 and 2^53.
  let seed = 1;
  const random = () => {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
    return seed / 2 ** 32;
  };
  const keys = [
    0,
    -0,
    1,
    7001,
    2 ** 31,
    2 ** 48 + 16,
    2 ** 53 - 1,
    2 ** 60,
    ...Array.from({ length: 300 }, (_, i) => 0x7f3a00c01230 + i * 4096),
  ];
  const table = new FrameTable<number>();
  const map = new Map<number, number>();
  for (let step = 0; step < 20_000; step++) {
    const key = keys[Math.floor(random() * keys.length)]!;
    const x = random();
    if (x < 0.45) {
      table.set(key, step);
      map.set(key, step);
    } else if (x < 0.9) {
      assert.equal(table.delete(key), map.delete(key), `step ${step}: delete ${key}`);
    } else if (x < 0.999) {
      assert.equal(table.get(key), map.get(key), `step ${step}: get ${key}`);
    } else {
      table.clear();
      map.clear();
    }
    assert.equal(table.size, map.size, `step ${step}: size`);
    if (step % 500 === 0) assert.deepEqual(table.values(), [...map.values()], `step ${step}`);
  }
  for (const key of keys) assert.equal(table.get(key), map.get(key), `get ${key}`);
  assert.deepEqual(table.values(), [...map.values()]);
});

Deno.test("FrameTable grows, keeping its keys and their order", () => {
  const table = new FrameTable<string>();
  for (let i = 0; i < 5000; i++) table.set(0x7f0000000000 + i * 16, `v${i}`);
  assert.equal(table.size, 5000);
  assert.equal(table.get(0x7f0000000000 + 4999 * 16), "v4999");
  assert.equal(table.get(0x7f0000000000 + 5000 * 16), undefined);
  // A key set again keeps its place; one deleted and set goes last.
  table.set(0x7f0000000000, "again");
  table.delete(0x7f0000000000 + 16);
  table.set(0x7f0000000000 + 16, "last");
  const values = table.values();
  assert.deepEqual([values[0], values.at(-1), values.length], ["again", "last", 5000]);
});
