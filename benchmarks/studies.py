"""Run every study (or the ones named) one after another, each in its own process as a user would, and print the
README's table: study, question, claim, verdict, wall time of the whole command. The verdicts come from each study's
study.json (computed from its runs), never from here.

    python benchmarks/studies.py [NAME ...] [--logdir DIR] [--full] [--seeds N]
"""

import argparse
import json
import pathlib
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main():
    from suite.studies import spec

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("names", nargs="*", help="studies to run (default: all)")
    ap.add_argument("--logdir", default="logs")
    ap.add_argument("--full", action="store_true")
    ap.add_argument("--seeds", type=int)
    a = ap.parse_args()
    names = a.names or list(spec.studies())
    rows = []
    for name in names:
        cmd = [sys.executable, "-m", "suite", "study", name, "--logdir", a.logdir]
        cmd += ["--full"] if a.full else []
        cmd += ["--seeds", str(a.seeds)] if a.seeds else []
        t0 = time.time()
        p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        wall = time.time() - t0
        s = spec.load(name)
        out = pathlib.Path(a.logdir) / "studies" / (name + ("-full" if a.full else "")) / "study.json"
        if not out.is_absolute():
            out = ROOT / out
        res = json.loads(out.read_text()) if p.returncode == 0 and out.is_file() else None
        verdict = res["verdict"] if res else f"failed (exit {p.returncode}): {p.stderr.strip().splitlines()[-1:]}"
        parts = "; ".join(f"{c['comparison']}: {c['verdict']}" for c in res["comparisons"]) if res else ""
        rows.append((name, s.question, s.claim_text, verdict, parts, wall))
        print(f"{name}: {verdict} ({parts}) in {wall:.0f} s", file=sys.stderr, flush=True)
    print("| study | question | claim | verdict (each comparison) | time |")
    print("|---|---|---|---|---:|")
    for name, q, claim, verdict, parts, wall in rows:
        print(f"| `{name}` | {q} | `{claim}` | **{verdict}** ({parts}) | {wall / 60:.1f} min |")


if __name__ == "__main__":
    main()
