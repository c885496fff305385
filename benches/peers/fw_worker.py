"""faster-whisper side of the peer benchmark: runs inside the venv that
peers.py creates. Reads a job (JSON on stdin), loads the model once, then
transcribes each file and reports the seconds each took (load excluded)."""

import json
import sys
import time

from faster_whisper import WhisperModel


def main():
    job = json.load(sys.stdin)
    opts = job["opts"]
    t0 = time.monotonic()
    model = WhisperModel(job["model"], device="cpu", compute_type=opts["compute_type"],
                         cpu_threads=job["threads"])
    load = time.monotonic() - t0
    seconds = []
    for f in job["files"]:
        t = time.monotonic()
        segments, _ = model.transcribe(f["wav"], language="en", beam_size=opts["beam_size"],
                                       vad_filter=opts["vad_filter"])
        # The segments are a generator: decoding happens while they are read.
        text = " ".join(s.text.strip() for s in segments)
        seconds.append(time.monotonic() - t)
        with open(f["out"], "w", encoding="utf-8") as out:
            out.write(text + "\n")
    json.dump({"load": load, "seconds": seconds}, sys.stdout)


if __name__ == "__main__":
    main()
