#!/usr/bin/env bash
# Sets up Perfetto's trace processor, offline, for the tests that load
# traces into it (tests/e2e_perfetto_test.ts): the engine of
# ui.perfetto.dev, as Debian ships it inside chromium-shell
# (libtest_trace_processor.so), and tp_query (tp_query.cc), which runs SQL
# on a trace with it. The same as the team's shared viewers/setup.sh
# --perfetto-only, kept here so that CI on a clean machine has it.
#
#   VIEWERS_HOME=/tmp/viewers .ci/viewer/setup.sh
#
# Needs root for apt-get (clang and libc++ to build tp_query; chromium-shell
# is only downloaded and unpacked, not installed). Safe to re-run: it skips
# what is there. Leaves $VIEWERS_HOME/bin/tp_query.
set -euo pipefail
HERE="$(cd "$(dirname "$(readlink -f "$0")")" && pwd)"
VH="${VIEWERS_HOME:-/tmp/viewers}"
mkdir -p "$VH/bin" "$VH/lib"
export DEBIAN_FRONTEND=noninteractive

need=()
for p in clang libc++-dev libc++abi-dev; do
  dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
  echo "[viewer] apt-get install ${need[*]}" >&2
  apt-get update -qq
  apt-get install -y -qq "${need[@]}" >/dev/null
fi

LIB=/usr/lib/chromium/libtest_trace_processor.so # present if chromium-shell is installed
if [ ! -f "$LIB" ]; then
  LIB="$VH/lib/libtest_trace_processor.so"
  if [ ! -f "$LIB" ]; then
    echo "[viewer] apt-get download chromium-shell; keeping only libtest_trace_processor.so" >&2
    tmp="$(mktemp -d)"
    trap 'rm -rf "$tmp"' EXIT
    # A fresh machine may have no package lists yet: update once and retry.
    (cd "$tmp" && apt-get download -qq chromium-shell 2>/dev/null) ||
      { apt-get update -qq && (cd "$tmp" && apt-get download -qq chromium-shell 2>/dev/null); } ||
      { echo "[viewer] error: apt-get download chromium-shell failed" >&2; exit 1; }
    dpkg-deb -x "$tmp"/chromium-shell_*.deb "$tmp/x"
    cp "$tmp/x/usr/lib/chromium/libtest_trace_processor.so" "$LIB"
    dpkg-deb -f "$tmp"/chromium-shell_*.deb Version >"$VH/lib/chromium-shell.version"
  fi
fi

ok=0
if [ -x "$VH/bin/tp_query" ]; then
  # Status 2 is its usage message: it runs, the library loads.
  set +e
  "$VH/bin/tp_query" >/dev/null 2>&1
  [ $? -eq 2 ] && ok=1
  set -e
fi
if [ $ok -eq 0 ] || [ "$HERE/tp_query.cc" -nt "$VH/bin/tp_query" ]; then
  echo "[viewer] building $VH/bin/tp_query against $LIB" >&2
  clang++ -std=c++17 -O1 -stdlib=libc++ -nostdlib++ "$HERE/tp_query.cc" -o "$VH/bin/tp_query" \
    -L"$(dirname "$LIB")" -ltest_trace_processor -Wl,-rpath,"$(dirname "$LIB")"
fi
echo "[viewer] ready: $VH/bin/tp_query" >&2
