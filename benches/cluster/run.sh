#!/usr/bin/env bash
# Cluster throughput: jobs per minute with 1, 2 and 3 workers on this
# machine, through a real nats-server (JetStream) on loopback.
#
#   bash benches/cluster/run.sh [WORKERS...]      # default: 1 2 3
#
# Needs: nats-server (Debian package), a built callpulse
# (target/debug or target/release, or CALLPULSE_BIN), the models
# (`callpulse models fetch`). Each round starts a fresh server, starts the
# workers and waits until they are ready (models loaded), then submits the
# same 12 recordings (the first 15 s of the bundled fixtures) and times
# `submit --wait` until every result is stored. Prints one line per round
# and a table at the end. Not part of `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=${CALLPULSE_BIN:-}
if [ -z "$BIN" ]; then
  for b in target/release/callpulse target/debug/callpulse; do
    [ -x "$b" ] && BIN=$b && break
  done
fi
[ -n "$BIN" ] || { echo "build callpulse first (cargo build --release)" >&2; exit 2; }
command -v nats-server >/dev/null || { echo "nats-server is needed (apt-get install nats-server)" >&2; exit 2; }
ROUNDS=("$@")
[ ${#ROUNDS[@]} -gt 0 ] || ROUNDS=(1 2 3)
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT
mkdir -p "$WORK/rec"
i=0
for f in call_escalation call_friendly call_calm call_signals call_prosody call_talkover call_es call_de call_fr call_escalation_8k call_friendly call_calm; do
  sox "audio-fixtures/$f.wav" "$WORK/rec/r$(printf %02d $i)_$f.wav" trim 0 15
  i=$((i + 1))
done
audio_s=$(for f in "$WORK"/rec/*.wav; do soxi -D "$f"; done | awk '{s+=$1} END {printf "%.1f", s}')
port=14300
results=()
for n in "${ROUNDS[@]}"; do
  port=$((port + 1))
  rm -rf "$WORK/js" && mkdir -p "$WORK/js"
  nats-server -js -sd "$WORK/js" -a 127.0.0.1 -p "$port" >"$WORK/nats.log" 2>&1 &
  nats=$!
  for _ in $(seq 50); do grep -q "Server is ready" "$WORK/nats.log" && break; sleep 0.1; done
  pids=()
  # whisper.cpp's threads spin while they wait: workers sharing a machine
  # must split its cores (asr.threads), or they slow each other down many
  # times over. One worker per machine uses them all.
  threads=$(( $(nproc) / n )); [ "$threads" -ge 1 ] || threads=1
  printf '[asr]\nthreads = %d\n' "$threads" >"$WORK/cfg$n.toml"
  for w in $(seq "$n"); do
    "$BIN" --config "$WORK/cfg$n.toml" worker --nats "nats://127.0.0.1:$port" --name "w$w" >"$WORK/w$w.log" 2>&1 &
    pids+=($!)
  done
  for w in $(seq "$n"); do
    for _ in $(seq 600); do grep -q "ready on" "$WORK/w$w.log" && break; sleep 0.1; done
  done
  t0=$(date +%s.%N)
  "$BIN" submit "$WORK"/rec/*.wav --nats "nats://127.0.0.1:$port" --wait --quiet --out-dir "$WORK/out$n"
  t1=$(date +%s.%N)
  secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN {print b - a}')
  jpm=$(awk -v s="$secs" 'BEGIN {print 12 * 60 / s}')
  redelivered=$(cat "$WORK"/w*.log | grep -c "attempt [2-9]" || true)
  printf 'workers %d (%d ASR threads each): 12 jobs (%.0f s of audio) in %.1f s = %.1f jobs/min, %d redelivered\n' "$n" "$threads" "$audio_s" "$secs" "$jpm" "$redelivered"
  results+=("$(printf '| %d | %d | %.1f | %.1f | %d |' "$n" "$threads" "$secs" "$jpm" "$redelivered")")
  kill -TERM "${pids[@]}" 2>/dev/null || true
  wait "${pids[@]}" 2>/dev/null || true
  kill "$nats" && wait "$nats" 2>/dev/null || true
  rm -f "$WORK"/w*.log
done
echo
echo "| workers | ASR threads each | wall, s | jobs/min | redelivered |"
echo "|---|---|---|---|---|"
printf '%s\n' "${results[@]}"
echo "($(nproc) CPUs; $(basename "$BIN") build: $BIN)"
