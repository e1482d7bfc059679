#!/usr/bin/env bash
# Regenerate assets/speech.wav: about 14 s of synthetic English speech in three moods
# (calm, excited, sad), so demos and tests have speech whose character changes over time.
# The output keeps espeak-ng's native 22,050 Hz mono 16-bit format on purpose: every
# consumer must resample it to 16 kHz, which exercises the resampler.
# Needs espeak-ng and sox.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
out="${1:-$here/speech.wav}"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

voice="en-us"
rate_hz=22050
pause_s=0.6

# Calm: low pitch, slow, quiet.
espeak-ng -v "$voice" -p 35 -s 150 -a 80 -w "$tmp/1.wav" \
  "Good evening. The weather was quiet and mild, and the lake was still."
# Excited: high pitch, fast, loud (-a 120 is the loudest that does not clip here).
espeak-ng -v "$voice" -p 85 -s 220 -a 120 -w "$tmp/2.wav" \
  "Wow, we won the final! This is absolutely amazing!"
# Sad: very low pitch, slowest, soft.
espeak-ng -v "$voice" -p 20 -s 130 -a 70 -w "$tmp/3.wav" \
  "I am sorry. Everything is gone now."

# -D: no dither, so the output is byte-for-byte reproducible.
sox -D -n -r "$rate_hz" -c 1 -b 16 "$tmp/pause.wav" trim 0 "$pause_s"
sox -D "$tmp/pause.wav" "$tmp/1.wav" "$tmp/pause.wav" "$tmp/2.wav" "$tmp/pause.wav" \
  "$tmp/3.wav" "$tmp/pause.wav" -r "$rate_hz" -c 1 -b 16 "$out"
soxi "$out"
