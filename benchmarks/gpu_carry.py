"""What a GPU session's call sends back, and what the next session's calls take along to resume.

The device machine (../shared/device/README.md) gives back at most 8 files from $OUT, 16 MiB each, 64 MiB in all,
no deeper than two folders; a call takes along at most 64 MiB; and the machine starts bare in every session. A run
longer than one session's device time (15 minutes, staging included) is lost unless its training state leaves with
the calls and comes back with the next session's. NiN's, GoogLeNet's and VGG-16-BN's state is larger than one call
can move (81–230 MiB), so the state travels in pieces over several calls, each way:

    there, after each part:     python3 benchmarks/gpu_carry.py pack LOGS OUT
    there, right after a call:  python3 benchmarks/gpu_carry.py more N      (the pieces that did not fit in OUT)
    here, after every call:     python benchmarks/gpu_carry.py collect FILES_AT   (the `files_at` the call returned)
    here, to start a session:   python benchmarks/gpu_carry.py plan [PART ...]   (the calls to make, in order)
    there, before the parts:    python3 benchmarks/gpu_carry.py restore LOGS FOLDER... --finished DIR

`pack` writes to OUT: session.log and rows.md as they are; results.tgz (LOGS/_text's logs and bench JSON, and each
finished run's results.json, config.json and event files, the event files left out with a line saying so when they
would not fit); state.json (the state's pieces and their SHA-256) and as many pieces state.tgz.0, .1, … (each under
16 MiB) as fit; the other pieces wait in SPILL on the machine for `more`. The state holds each unfinished run's
directory with only its newest backup commit and no last.keras, as many runs as fit in STATE_MAX, the most recently
committed first (a run the suite no longer resumes, its config's hash changed, goes last), and the finished runs'
results.json and config.json, so the next machine skips them.
`collect` unpacks results.tgz under logs/gpu/call-TIME/ (for `suite report` and `suite board`), prints rows.md, and
gathers the pieces in .devstate/incoming/; once all have come, checked against state.json, they replace
.devstate/ready/, grouped by the call that takes them along (send-1, send-2, … to /tmp/stage/state in staging
calls, 60 MiB each; work, at most 45 MiB, with the work call beside .devcarry/base). Until then the earlier
state stays: a session that could not bring everything back loses nothing it had, and the runs its calls finished
stay finished: collect also keeps every finished run's results.json and config.json in .devstate/finished, which
the work call carries, and `restore --finished` marks them so. (.devstate, not .devcarry:
../shared/device/stage.sh empties .devcarry.) `restore` unpacks the state into LOGS, leaving alone a run directory
the machine still has; it refuses an incomplete state (the session would start those runs afresh and then carry
the fresh ones back over the good state); LOGS must be the path the runs were made under (log.dir is part of a
run's identity; the script's default is /tmp/suite-logs).
Written by hand because the limits are this workplace's own; tarfile and the suite's backup layout do the rest.
"""

import argparse
import datetime
import hashlib
import io
import json
import os
import pathlib
import re
import shutil
import sys
import tarfile

PIECE = 15 * 2**20  # under the 16 MiB a file may have
FILES, TOTAL = 8, 64 * 2**20  # files back from $OUT, and their bytes together
# 16 pieces: up to 4 calls more each way beside the work call (NiN 81 MiB, GoogLeNet 145 MiB: RESULTS.md)
STATE_MAX = int(os.environ.get("STATE_MAX", 240 * 2**20))
SPILL = os.environ.get("SPILL", "/tmp/carry-spill")  # on the machine: the pieces `more` sends back
SEND, SEND_LAST = 4, 3  # pieces a staging call takes along (60 MiB), and the work call beside .devcarry/base
WORK_MAX = 60 * 2**20  # what the work call may take along (64 MiB with the ~1 MiB work tree): `plan` fills it
MANIFEST = "state.json"
PACKED = ".packed"  # LOGS/.packed: the ids of the states packed on this machine
FINISHED = ".devstate/finished"  # here: every run a call finished (results.json, config.json), for `restore`
TEXT = "_text"  # LOGS/_text: the session's logs, bench outputs and rows.md
NAME = re.compile(r"^[A-Za-z0-9._-]+$")


def run_dirs(logs):
    """Run directories under LOGS (LOGS/EXPERIMENT/RUN holding config.json)."""
    return sorted(p.parent for p in pathlib.Path(logs).glob("*/*/config.json"))


def _newest_commit(run):
    """The backup commit a resume would read: the newest `backup/epoch-E[-step-S]` (commits.newest_first's order)."""
    def key(p):
        m = re.fullmatch(r"epoch-(\d+)(?:-step-(\d+))?", p.name)
        return (int(m[1]), int(m[2] or 0)) if m else None
    commits = [p for p in (run / "backup").glob("epoch-*") if p.is_dir() and key(p)]
    return max(commits, key=key, default=None)


def _events(run):
    return sorted(p for p in run.rglob("events.out.tfevents*") if p.is_file())


def _tgz(members):
    """A gzip tar in memory of [(file, name in the archive)]."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", compresslevel=1) as tar:  # weights hardly compress: be quick
        for path, arcname in members:
            tar.add(path, arcname=arcname)
    return buf.getvalue()


def _state_members(run, logs):
    commit = _newest_commit(run)
    if commit is None:
        return None
    rel = run.relative_to(logs)
    members = []
    for p in sorted(run.rglob("*")):
        if not p.is_file() or p.name == "last.keras":
            continue
        inside = p.relative_to(run)
        if inside.parts[0] == "backup" and (len(inside.parts) < 3 or inside.parts[1] != commit.name):
            continue  # older commits and damaged ones: the resume reads the newest
        members.append((p, str(rel / inside)))
    return members


def pack(logs, out, spill=None, echo=print):
    logs, out, spill = pathlib.Path(logs), pathlib.Path(out), pathlib.Path(spill or SPILL)
    out.mkdir(parents=True, exist_ok=True)
    for old in [*out.glob("results.tgz"), *out.glob("state.tgz.*"), *out.glob(MANIFEST)]:
        old.unlink()
    shutil.rmtree(spill, ignore_errors=True)
    text = logs / TEXT
    notes = []
    plain = [p for p in (text / "session.log", text / "rows.md") if p.is_file()]
    texts = [(p, f"{TEXT}/{p.name}") for p in sorted(text.glob("*")) if p.is_file()] if text.is_dir() else []
    finished, unfinished = [], []
    for run in run_dirs(logs):
        (finished if (run / "results.json").is_file() else unfinished).append(run)
    summary = [(run / n, str((run / n).relative_to(logs))) for run in finished
               for n in ("results.json", "config.json") if (run / n).is_file()]
    events = [(p, str(p.relative_to(logs))) for run in finished for p in _events(run)]
    results = _tgz(texts + summary + events)
    if len(results) > PIECE:
        notes.append(f"results.tgz: the finished runs' event files left out ({len(results) / 2**20:.1f} MiB with them)")
        results = _tgz(texts + summary)
    if len(results) > PIECE:
        raise SystemExit(f"error: results.tgz is {len(results) / 2**20:.1f} MiB without event files; "
                         f"over the {PIECE / 2**20:.0f} MiB a returned file may have")
    # the finished runs' results.json and config.json travel too: the next machine skips what is done. Each run is
    # a gzip tar of its own, compressed once; their concatenation is one stream that _open reads whole
    carried, blobs = [], [_tgz(summary)] if summary else []
    unfinished.sort(key=lambda r: -(_newest_commit(r) or r).stat().st_mtime)
    for run in unfinished:
        members = _state_members(run, logs)
        if members is None:
            notes.append(f"{run.relative_to(logs)}: no backup commit yet, nothing to carry")
            continue
        blob, size = _tgz(members), sum(map(len, blobs))
        if size + len(blob) > STATE_MAX:
            notes.append(f"{run.relative_to(logs)}: not carried, its state would take the carried state to "
                         f"{(size + len(blob)) / 2**20:.1f} MiB, over STATE_MAX ({STATE_MAX / 2**20:.0f} MiB); a "
                         "later session starts it afresh")
            continue
        carried.append(run)
        blobs.append(blob)
    state = b"".join(blobs)
    for r in carried:
        notes.append(f"{r.relative_to(logs)}: state carried ({_newest_commit(r).name})")
    if text.is_dir():  # the notes go into the session.log that comes back, each once (pack runs after every part)
        log = text / "session.log"
        seen = set(log.read_text().splitlines()) if log.is_file() else set()
        with open(log, "a") as f:
            f.writelines(f"carry: {n}\n" for n in notes if f"carry: {n}" not in seen)
    for p in plain:
        shutil.copyfile(p, out / p.name)
    (out / "results.tgz").write_bytes(results)
    pieces = [state[i:i + PIECE] for i in range(0, len(state), PIECE)]
    manifest = json.dumps({"id": hashlib.sha256(state).hexdigest()[:16], "pieces": len(pieces), "bytes": len(state),
                           "sha256": [hashlib.sha256(b).hexdigest() for b in pieces]})
    (out / MANIFEST).write_text(manifest)
    with open(logs / PACKED, "a") as f:  # a later call on this machine has all of it: restore passes it by
        f.write(json.loads(manifest)["id"] + "\n")
    spill.mkdir(parents=True)  # every piece, so that `more` can send any of them again
    (spill / MANIFEST).write_text(manifest)
    for i, piece in enumerate(pieces):
        (spill / f"state.tgz.{i}").write_bytes(piece)
    here = _fill(spill, out, 0, len(pieces))
    check(out)
    for n in notes:
        echo(f"carry: {n}")
    if here < len(pieces):  # said on the call's output, not in session.log: it changes with every pack
        echo(f"carry: pieces {here}–{len(pieces) - 1} of the state ({len(state) / 2**20:.1f} MiB in "
             f"{len(pieces)} pieces) wait in {spill}: right after this call, call `python3 benchmarks/gpu_carry.py "
             f"more {here}` (the machine goes back after 30 s idle)")
    return notes


def _fill(spill, out, first, count):
    """Copies pieces first, first+1, … from SPILL into OUT while OUT stays within the tool's limits; the next one."""
    files = [p for p in out.iterdir() if p.is_file()]
    n, size = len(files), sum(p.stat().st_size for p in files)
    i = first
    while i < count:
        piece = spill / f"state.tgz.{i}"
        bytes_ = piece.stat().st_size
        if n + 1 > FILES or size + bytes_ > TOTAL - 2**20:
            break
        shutil.copyfile(piece, out / piece.name)
        n, size, i = n + 1, size + bytes_, i + 1
    return i


def more(first, spill=None, out=None, echo=print):
    """The state's pieces FIRST, FIRST+1, … into OUT (a call of their own, right after the work call)."""
    spill, out = pathlib.Path(spill or SPILL), pathlib.Path(out or os.environ.get("OUT", "/tmp/out"))
    if not (spill / MANIFEST).is_file():
        raise SystemExit(f"error: no state waits in {spill}: this machine packed none (a fresh machine: the pieces "
                         "left with the last one; .devstate/ready keeps the earlier state)")
    count = json.loads((spill / MANIFEST).read_text())["pieces"]
    if not 0 <= first < count:
        raise SystemExit(f"error: the state has pieces 0–{count - 1}; asked for {first}")
    out.mkdir(parents=True, exist_ok=True)
    for old in [*out.glob("state.tgz.*"), *out.glob(MANIFEST)]:
        old.unlink()
    shutil.copyfile(spill / MANIFEST, out / MANIFEST)
    nxt = _fill(spill, out, first, count)
    check(out)
    echo(f"carry: pieces {first}–{nxt - 1} of {count} in {out}; "
         + (f"next, right away: `python3 benchmarks/gpu_carry.py more {nxt}`" if nxt < count else "that was the last"))
    return nxt


def check(out):
    """Refuses an OUT the device tool would not give back whole."""
    files = [p for p in pathlib.Path(out).rglob("*") if p.is_file()]
    bad = [str(p) for p in files if len(p.relative_to(out).parts) > 3
           or not all(NAME.match(part) for part in p.relative_to(out).parts) or p.stat().st_size > 16 * 2**20]
    if bad or len(files) > FILES or sum(p.stat().st_size for p in files) > TOTAL:
        raise SystemExit(f"error: {out} would not come back whole: {len(files)} files (at most {FILES}), "
                         f"{sum(p.stat().st_size for p in files) / 2**20:.1f} MiB (at most 64); refused: {bad}")


def _open(pieces):
    """The state's pieces as one tar: gzip members one after another (a tar per run), read across end markers."""
    return tarfile.open(fileobj=io.BytesIO(b"".join(p.read_bytes() for p in pieces)), mode="r:gz", ignore_zeros=True)


def _extract(tar, dest, members=None):
    """tarfile's "data" filter (no absolute paths, no links out) where this Python has it (3.12, 3.11.4+)."""
    tar.extractall(dest, members=members, **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))


def _gather(folders):
    """The manifest and the pieces found in FOLDERS (the first folder's manifest when several are there)."""
    found = [p for f in map(pathlib.Path, folders) if f.is_dir() for p in sorted(f.rglob("*")) if p.is_file()]
    manifests = [json.loads(p.read_text()) for p in found if p.name == MANIFEST]
    if not manifests:
        return None, {}
    m = manifests[0]
    pieces = {}
    for p in found:
        i = int(p.suffix[1:]) if p.name.startswith("state.tgz.") and p.suffix[1:].isdigit() else -1
        if 0 <= i < m["pieces"] and i not in pieces and hashlib.sha256(p.read_bytes()).hexdigest() == m["sha256"][i]:
            pieces[i] = p
    return m, pieces


def _ranges(numbers):
    """[0, 1, 2, 5] -> "0–2, 5"."""
    spans = []
    for n in numbers:
        if spans and n == spans[-1][1] + 1:
            spans[-1][1] = n
        else:
            spans.append([n, n])
    return ", ".join(f"{a}" if a == b else f"{a}–{b}" for a, b in spans)


def restore(logs, folders, finished=None, echo=print):
    """The carried state into LOGS, then the runs FINISHED says finished in earlier calls (results.json and
    config.json from `collect`): a session whose state did not all come back does not train those again."""
    logs = pathlib.Path(logs)
    kept = _restore_state(logs, folders, echo)
    done = sorted(pathlib.Path(finished).glob("*/*/results.json")) if finished else []
    for r in (p.parent for p in done):
        run = logs / r.parent.name / r.name
        if (run / "results.json").is_file() or json.loads((r / "config.json").read_text())["log"]["dir"] != str(logs):
            continue
        run.mkdir(parents=True, exist_ok=True)
        for n in ("config.json", "results.json"):  # results.json last: it is what marks the run finished
            shutil.copyfile(r / n, run / n)
        echo(f"carry: {r.parent.name}/{r.name}: finished in an earlier call, marked so")
    return kept


def _restore_state(logs, folders, echo):
    man, pieces = _gather(folders)
    if man is None or not man["pieces"]:
        echo(f"carry: no state in {' '.join(map(str, folders))}")
        return []
    if (logs / PACKED).is_file() and man["id"] in (logs / PACKED).read_text().split():
        echo(f"carry: state {man['id']} was packed on this machine, which has all of it")
        return []
    missing = [i for i in range(man["pieces"]) if i not in pieces]
    if missing:  # resuming part of it would start those runs afresh, and carry the fresh ones back over the good state
        raise SystemExit(f"error: the carried state {man['id']} lacks pieces {_ranges(missing)} of {man['pieces']}: "
                         "send each .devstate/ready/send-N folder before the work call (`python "
                         "benchmarks/gpu_carry.py plan` lists the calls); nothing restored, nothing run")
    with _open([pieces[i] for i in range(man["pieces"])]) as tar:
        members = tar.getmembers()
        runs = sorted({tuple(pathlib.PurePosixPath(m.name).parts[:2]) for m in members})
        made = {json.load(tar.extractfile(f"{'/'.join(r)}/config.json"))["log"]["dir"] for r in runs}
        if made - {str(logs)}:  # log.dir is part of a run's identity: elsewhere it would start afresh
            raise SystemExit(f"error: the carried runs were made with LOGS={' '.join(sorted(made))}, this call has "
                             f"LOGS={logs}: call again with LOGS={sorted(made)[0]}; nothing restored, nothing run")
        kept = []
        for r in runs:
            name = "/".join(r)
            if logs.joinpath(*r).exists():
                echo(f"carry: {name}: this machine has it already, kept")
            else:
                echo(f"carry: {name}: restored")
                kept.append(r)
        take = [m for m in members if tuple(pathlib.PurePosixPath(m.name).parts[:2]) in kept]
        _extract(tar, logs, take)
    return kept


def collect(files_at, root=".", echo=print):
    src, root = pathlib.Path(files_at), pathlib.Path(root)
    results = src / "results.tgz"
    if not results.is_file() and not (src / MANIFEST).is_file():
        echo(f"collect: no results.tgz and no {MANIFEST} in {src}: the call ended before it packed; .devstate is "
             "left as it was")
        return None
    dest = None
    if results.is_file():
        stamp = datetime.datetime.fromtimestamp(results.stat().st_mtime).strftime("%Y%m%d-%H%M%S")
        dest = root / "logs" / "gpu" / f"call-{stamp}"  # one folder a call: a later call overwrites nothing
        dest.mkdir(parents=True, exist_ok=True)
        with tarfile.open(results, "r:gz") as tar:
            _extract(tar, dest)
        echo(f"collect: results under {dest}")
        for r in (p.parent for p in dest.glob("*/*/results.json")):  # kept whatever becomes of the state
            (root / FINISHED / r.parent.name / r.name).mkdir(parents=True, exist_ok=True)
            for n in ("config.json", "results.json"):
                shutil.copyfile(r / n, root / FINISHED / r.parent.name / r.name / n)
    if (src / MANIFEST).is_file():
        _collect_state(src, root, echo)
    rows = src / "rows.md"
    if rows.is_file():
        echo(rows.read_text().rstrip())
    return dest


def _collect_state(src, root, echo):
    """Adds the call's pieces to .devstate/incoming; a complete, whole state replaces .devstate/ready."""
    m = json.loads((src / MANIFEST).read_text())
    incoming, ready = root / ".devstate" / "incoming", root / ".devstate" / "ready"
    if any(json.loads(p.read_text())["id"] == m["id"] for p in ready.glob(f"*/{MANIFEST}")):
        echo(f"collect: state {m['id']}: {ready} has it already")
        return
    if not (incoming / MANIFEST).is_file() or json.loads((incoming / MANIFEST).read_text())["id"] != m["id"]:
        shutil.rmtree(incoming, ignore_errors=True)  # a new pack: what came of an older one is of no use
        incoming.mkdir(parents=True)
        shutil.copyfile(src / MANIFEST, incoming / MANIFEST)
    _, came = _gather([src])
    wrong = sorted(p.name for p in src.glob("state.tgz.*") if p not in came.values())
    if wrong:
        raise SystemExit(f"error: {', '.join(wrong)} in {src} do not match its {MANIFEST} (a broken transfer): "
                         "call `more` for them again; .devstate is left as it was")
    for p in came.values():
        shutil.copyfile(p, incoming / p.name)
    _, have = _gather([incoming])
    missing = [i for i in range(m["pieces"]) if i not in have]
    if missing:
        echo(f"collect: state {m['id']}: {len(have)} of {m['pieces']} pieces here, {_ranges(missing)} still on the "
             f"machine: call `python3 benchmarks/gpu_carry.py more {missing[0]}` now (it goes back after 30 s idle); "
             f"until all have come, {ready} stays as it was")
        return
    pieces = [have[i] for i in range(m["pieces"])]
    if pieces:
        with _open(pieces) as tar:  # whole, before it replaces the earlier state
            tar.getmembers()
    shutil.rmtree(ready, ignore_errors=True)
    ready.mkdir(parents=True)
    # staging calls take SEND pieces each; the work call the last SEND_LAST or fewer, beside .devcarry/base
    cut = min(len(pieces), -(-max(len(pieces) - SEND_LAST, 0) // SEND) * SEND)
    groups = {f"send-{k + 1}": pieces[i:i + SEND] for k, i in enumerate(range(0, cut, SEND))}
    groups.update({"work": pieces[cut:]} if cut < len(pieces) else {})
    for name, group in groups.items():
        (ready / name).mkdir()
        shutil.copyfile(incoming / MANIFEST, ready / name / MANIFEST)
        for p in group:
            p.rename(ready / name / p.name)
    shutil.rmtree(incoming)
    echo(f"collect: state for the next session: {ready} ({m['bytes'] / 2**20:.1f} MiB in {len(pieces)} pieces, "
         f"{len(groups)} folder(s) to send; `python benchmarks/gpu_carry.py plan` lists the calls)")


def _size(folder):
    return sum(p.stat().st_size for p in pathlib.Path(folder).rglob("*") if p.is_file())


def plan(root=".", parts="", echo=print):
    """The calls of a GPU session, in order: staging (.devcarry), the state (.devstate/ready), the work."""
    root = pathlib.Path(root)
    if not (root / ".devcarry" / "base").is_dir():
        raise SystemExit("error: no .devcarry/base: run `python benchmarks/gpu_stage.py stage cifar10` (or `bash "
                         "../shared/device/stage.sh cifar10`) first")

    def order(d):  # stage-2 before stage-10
        name, _, n = d.name.rpartition("-")
        return (name, int(n)) if n.isdigit() else (d.name, 0)
    stage = sorted((d for d in (root / ".devcarry").iterdir() if d.is_dir() and d.name != "base"), key=order)
    ready = root / ".devstate" / "ready"
    sends = sorted(ready.glob("send-*"), key=lambda d: int(d.name.split("-")[1]))
    calls = [([d], f"mkdir -p /tmp/stage && cp {d.relative_to(root)}/* /tmp/stage/") for d in stage]
    if stage and (root / ".devcarry" / "base" / "stage.json").is_file():
        # gpu_stage.py's pieces are unpacked there with Python's lzma and NumPy: the first call checks them, so a
        # machine without them costs one call, not a session (then stage with ../shared/device/stage.sh instead)
        calls[0] = (calls[0][0], 'python3 -c "import lzma, numpy" && ' + calls[0][1])
    calls += [([d], f"mkdir -p /tmp/stage/state && cp {d.relative_to(root)}/* /tmp/stage/state/") for d in sends]
    work = [root / ".devcarry" / "base"] + [d for d in [ready / "work", root / FINISHED] if d.is_dir()]
    command = ("source .devcarry/base/install.sh && BUDGET=B bash benchmarks/gpu_session.sh "
               + (parts or "bench prof xla exp:plain20"))
    if stage and sum(map(_size, work + stage[-1:])) <= WORK_MAX:
        # the last staging piece rides with the work call when both fit: one call fewer
        work, command = work + stage[-1:], calls.pop(len(stage) - 1)[1] + " && " + command
    calls.append((work, command))
    echo(f"{len(calls)} calls, each right after the one before (the machine goes back after 30 s idle):")
    for k, (carry, command) in enumerate(calls, 1):
        echo(f"{k}. carry {json.dumps([str(c.relative_to(root)) for c in carry])}; command: {command}")
    # the call itself stops at 600 s: a larger B would be cut by the device, not by the script's SIGTERM and commit
    echo("B: status's budget_left_s at the work call less 90 s, and less again for each `more` call the state "
         "will need (64 MiB each), but at most 540 (the call runs 600 at most: its parts must end and pack before "
         "that), timeout_s 600. After each call: `python benchmarks/gpu_carry.py collect "
         "FILES_AT`; while it says pieces are still on the machine, call `python3 benchmarks/gpu_carry.py more N` "
         "(no carry) at once.")
    return calls


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("pack").add_argument("logs")
    sub.choices["pack"].add_argument("out")
    sub.add_parser("more").add_argument("first", type=int, help="the first piece to send")
    sub.add_parser("restore").add_argument("logs")
    sub.choices["restore"].add_argument("folders", nargs="+", help="where the state's pieces are")
    sub.choices["restore"].add_argument("--finished", help="runs finished in earlier calls (.devstate/finished)")
    sub.add_parser("collect").add_argument("files_at")
    sub.add_parser("plan").add_argument("parts", nargs="*",
                                        help="gpu_session.sh's parts (default: bench prof xla exp:plain20)")
    for name in ("collect", "plan"):
        sub.choices[name].add_argument("--root", default=".", help="the project root (default: here)")
    a = ap.parse_args()
    if a.cmd == "pack":
        pack(a.logs, a.out)
    elif a.cmd == "more":
        more(a.first)
    elif a.cmd == "restore":
        restore(a.logs, a.folders, a.finished)
    elif a.cmd == "collect":
        collect(a.files_at, a.root)
    else:
        plan(a.root, " ".join(a.parts))
    sys.exit(0)
