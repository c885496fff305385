#!/usr/bin/env python3
"""Check the generated call fixtures against their scripts (stdlib only).

    python3 audio-fixtures/check_fixtures.py

For every `<call>.script.json` beside a `<call>.wav` it checks the format,
that turns alternate without overlap, gaps and durations are in range, and
that the audio agrees with the script:

  * inside [start, end] the speaker's channel carries speech (RMS well above
    the noise floor) and the speech reaches both edges (the first and last
    30 ms of the span are not silent);
  * in the 60 ms just before start and just after end that channel is at the
    noise floor;
  * the other channel is at the noise floor for the whole turn;
  * no sample is at full scale (no clipping).
"""

import array
import glob
import json
import math
import os
import sys
import wave

HERE = os.path.dirname(os.path.abspath(__file__))


def load(path):
    with wave.open(path, "rb") as w:
        ch, sw, rate, n = w.getnchannels(), w.getsampwidth(), w.getframerate(), w.getnframes()
        data = array.array("h")
        data.frombytes(w.readframes(n))
    if sys.byteorder == "big":
        data.byteswap()
    return ch, sw, rate, [data[i::ch] for i in range(ch)]


def dbfs(x):
    if not x:
        return -200.0
    rms = math.sqrt(sum(v * v for v in x) / len(x))
    return 20 * math.log10(max(rms, 1e-9) / 32768.0)


def check(script_path):
    errors = []
    s = json.load(open(script_path))
    wav = script_path.replace(".script.json", ".wav")
    ch, sw, rate, chans = load(wav)
    n = len(chans[0])
    size = os.path.getsize(wav)
    if (ch, sw, rate) != (2, 2, s["sample_rate"]):
        errors.append("format %r" % ((ch, sw, rate),))
    noise = [dbfs(c[: int(0.4 * rate)]) for c in chans]
    print("%s: %d Hz, %d ch, %.2f s, %d bytes, %d turns, noise floor %.1f / %.1f dBFS"
          % (os.path.basename(wav), rate, ch, n / rate, size, len(s["turns"]), noise[0], noise[1]))
    peak = max(max(abs(min(c)), abs(max(c))) for c in chans)
    if peak >= 32767:
        errors.append("clipping")
    prev_end = None
    for t in s["turns"]:
        a, b = int(round(t["start"] * rate)), int(round(t["end"] * rate))
        own, other = chans[t["channel"]], chans[1 - t["channel"]]
        dur = t["end"] - t["start"]
        words = len(t["text"].split())
        if not 1.5 <= dur <= 8.0:
            errors.append("turn %d duration %.2f" % (t["index"], dur))
        if not 6 <= words <= 25:
            errors.append("turn %d words %d" % (t["index"], words))
        if prev_end is not None:
            gap = t["start"] - prev_end
            if not 0.79 <= gap <= 1.51:
                errors.append("turn %d gap %.3f" % (t["index"], gap))
        prev_end = t["end"]
        if t["channel"] != {"agent": 0, "customer": 1}[t["speaker"]]:
            errors.append("turn %d channel" % t["index"])
        edge = int(0.03 * rate)
        guard = int(0.06 * rate)
        speech = dbfs(own[a:b])
        head, tail = dbfs(own[a:a + edge]), dbfs(own[b - edge:b])
        before, after = dbfs(own[a - guard:a]), dbfs(own[b:b + guard])
        cross = dbfs(other[a:b])
        print("  %2d %-8s %-8s %6.2f-%6.2f  speech %5.1f  edges %5.1f %5.1f  "
              "outside %5.1f %5.1f  other ch %5.1f dBFS"
              % (t["index"], t["speaker"], t["polarity"], t["start"], t["end"],
                 speech, head, tail, before, after, cross))
        floor = max(noise) + 3.0
        if speech < -35:
            errors.append("turn %d speech too quiet" % t["index"])
        if head < floor or tail < floor:
            errors.append("turn %d speech does not reach its edges" % t["index"])
        if before > floor or after > floor:
            errors.append("turn %d energy outside its span" % t["index"])
        if cross > floor:
            errors.append("turn %d leaks onto the other channel" % t["index"])
    if s["turns"][-1]["end"] > n / rate:
        errors.append("last turn beyond end of file")
    for e in errors:
        print("  ERROR:", e)
    return not errors


def main():
    ok = True
    for p in sorted(glob.glob(os.path.join(HERE, "*.script.json"))):
        ok &= check(p)
    print("OK" if ok else "FAILED")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
