#!/usr/bin/env bash
# Peer benchmark: whisper.cpp's CLI, faster-whisper and callpulse side by side
# on the speech corpus. Options: see `benches/peers/run.sh --help` and README.md.
set -euo pipefail
cd "$(dirname "$0")/../.."
exec python3 benches/peers/peers.py "$@"
