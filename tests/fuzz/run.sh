#!/usr/bin/env bash
# Runs every fuzz target for a fixed number of executions (default 200,000 each; a first
# argument changes it), seeded with the shared data set's real packets and with the inputs of
# the crashes fixed so far (tests/fuzz/regressions/<target>/, replayed first: each must pass).
# Prints executions and crashes per target; exits non-zero if any target crashes.
#
#   bash tests/fuzz/run.sh            # 200,000 executions per target (~15 min on 2 cores)
#   bash tests/fuzz/run.sh 5000000    # a long run
#
# Needs the nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`). The build uses
# ../../target-fuzz (kept apart from the release build) and compiles no C/C++.
set -euo pipefail
cd "$(dirname "$0")"
runs="${1:-200000}"
shared="${LIGHTKEEPER_SHARED_DATA:-$(cd ../../.. && pwd)/shared/data}"
export CARGO_TARGET_DIR="${FUZZ_TARGET_DIR:-/var/tmp/lightkeeper-fuzz-target}"
targets=(decode_packets changelog_records stored_values filter_language ws_messages pipeline_yaml)

seed() {  # seed <target> <corpus dir>
  mkdir -p "$2"
  case "$1" in
    decode_packets)
      find "$shared/ztf/alerts" "$shared/lsst/alerts" -name '*.avro' -size -200k | head -200 |
        while read -r f; do cp "$f" "$2/$(basename "$(dirname "$f")")-$(basename "$f")"; done ;;
    filter_language)
      printf '%s' 'mag_r < 18 and (ndethist > 3 or drb >= 0.9)' > "$2/a"
      printf '%s' 'survey = "ztf" and object_id in ("ZTF21a", "ZTF21b") and not isdiffpos' > "$2/b"
      printf '%s' 'ra > 36 and ra < 37 and mag_g is null' > "$2/c" ;;
    ws_messages)
      printf '%s' '{"op":"subscribe","sub":"s","objects":["ztf:ZTF21abcdefg"],"from_version":3}' > "$2/a"
      printf '%s' '{"op":"subscribe","sub":"f","filter":"mag_g < 18","snapshot":true}' > "$2/b"
      printf '%s' '{"op":"unsubscribe","sub":"s"}' > "$2/c" ;;
    pipeline_yaml)
      printf 'description: d\nprocessors:\n  - class: solar_system\n    params: { include: [saturn] }\n  - class: filter\n    params: { where: "reliability > 0.5" }\n  - class: kafka\n    params: { topic: giants, format: avro }\n' > "$2/a" ;;
  esac
}

cargo +nightly fuzz build --release 2>&1 | tail -n 1
failed=0
for t in "${targets[@]}"; do
  corpus="corpus/$t"
  seed "$t" "$corpus"
  if [ -d "regressions/$t" ]; then
    cargo +nightly fuzz run --release "$t" regressions/$t/* -- -runs=0 >/dev/null 2>&1 ||
      { echo "$t: a fixed crash came back (regressions/$t)"; failed=1; }
  fi
  log="$(mktemp)"
  if cargo +nightly fuzz run --release "$t" "$corpus" -- -runs="$runs" -max_len=262144 -rss_limit_mb=2048 \
      -malloc_limit_mb=256 > "$log" 2>&1; then
    echo "$t: $(grep -o 'Done [0-9]* runs in [0-9]* second(s)' "$log" | tail -n 1), no crash"
  else
    echo "$t: CRASHED — see $log and tests/fuzz/artifacts/$t"; failed=1
    grep -E 'panicked|ERROR|SUMMARY' "$log" | head -n 5
  fi
done
exit "$failed"
