"""What a GPU session's call sends back, and what the next session's call takes along to resume.

The device machine (../shared/device/README.md) gives back at most 8 files from $OUT, 16 MiB each, 64 MiB in all,
no deeper than two folders, and it starts bare in every session: a run longer than one session's device time
(15 minutes, staging included) is lost unless its training state leaves with the call and comes back with the next.

    there, after each part:   python3 benchmarks/gpu_carry.py pack LOGS OUT
    here, after the call:     python benchmarks/gpu_carry.py collect FILES_AT   (the `files_at` the call returned)
    there, before the parts:  python3 benchmarks/gpu_carry.py restore .devcarry/state LOGS

`pack` writes to OUT: session.log and rows.md as they are; results.tgz (LOGS/_text's logs and bench JSON, and each
finished run's results.json, config.json and event files, the event files left out with a line saying so when they
would not fit); state.tgz.0, .1, … in pieces under 16 MiB: each unfinished run's directory with only its newest
backup commit and no last.keras, as many runs as fit in STATE_MAX (what `carry` takes beside the project and
.devcarry/base), the most recently committed first (a run the suite no longer resumes, its config's hash changed,
goes last), and the finished runs' results.json and config.json, so the next machine skips them.
`collect` unpacks results.tgz under logs/gpu/call-TIME/ (for `suite report` and `suite board`), prints rows.md, and
puts the state pieces into .devcarry/state/, replacing the earlier state only if the call packed. `restore` unpacks
the state into LOGS, leaving alone a run directory the machine still has; LOGS must be the path the runs were made
under (log.dir is part of a run's identity; the script's default is /tmp/suite-logs).
Written by hand because the limits are this workplace's own; tarfile and the suite's backup layout do the rest.
"""

import argparse
import datetime
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
STATE_MAX = int(os.environ.get("STATE_MAX", 48 * 2**20))  # carry: 64 MiB less the project and .devcarry/base
TEXT = "_text"  # LOGS/_text: the session's logs, bench outputs and rows.md
NAME = re.compile(r"^[A-Za-z0-9._-]+$")


def run_dirs(logs):
    """Run directories under LOGS (LOGS/EXPERIMENT/RUN holding config.json)."""
    return sorted(p.parent for p in pathlib.Path(logs).glob("*/*/config.json"))


def _newest_commit(run):
    """The backup commit a resume would read: the newest `backup/epoch-E[-step-S]` (callbacks._commits' order)."""
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


def pack(logs, out, echo=print):
    logs, out = pathlib.Path(logs), pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for old in list(out.glob("results.tgz")) + list(out.glob("state.tgz.*")):
        old.unlink()
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
    used = sum(p.stat().st_size for p in plain) + len(results)
    room = min(STATE_MAX, TOTAL - used - 2**20, (FILES - len(plain) - 1) * PIECE)
    # the finished runs' results.json and config.json travel too: the next machine skips what is done
    carried, chosen, state = [], list(summary), _tgz(summary) if summary else b""
    unfinished.sort(key=lambda r: -(_newest_commit(r) or r).stat().st_mtime)
    for run in unfinished:
        members = _state_members(run, logs)
        if members is None:
            notes.append(f"{run.relative_to(logs)}: no backup commit yet, nothing to carry")
            continue
        trial = _tgz(chosen + members)
        if len(trial) > room:
            notes.append(f"{run.relative_to(logs)}: not carried, its state would take the carried state to "
                         f"{len(trial) / 2**20:.1f} MiB, over the {room / 2**20:.1f} MiB left; a later session "
                         "starts it afresh")
            continue
        carried.append(run)
        chosen += members
        state = trial
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
    for i in range(0, len(state), PIECE):
        (out / f"state.tgz.{i // PIECE}").write_bytes(state[i:i + PIECE])
    check(out)
    for n in notes:
        echo(f"carry: {n}")
    return notes


def check(out):
    """Refuses an OUT the device tool would not give back whole."""
    files = [p for p in pathlib.Path(out).rglob("*") if p.is_file()]
    bad = [str(p) for p in files if len(p.relative_to(out).parts) > 3
           or not all(NAME.match(part) for part in p.relative_to(out).parts) or p.stat().st_size > 16 * 2**20]
    if bad or len(files) > FILES or sum(p.stat().st_size for p in files) > TOTAL:
        raise SystemExit(f"error: {out} would not come back whole: {len(files)} files (at most {FILES}), "
                         f"{sum(p.stat().st_size for p in files) / 2**20:.1f} MiB (at most 64); refused: {bad}")


def _pieces(folder):
    pieces = sorted(pathlib.Path(folder).glob("state.tgz.*"), key=lambda p: int(p.suffix[1:]))
    if [int(p.suffix[1:]) for p in pieces] != list(range(len(pieces))):
        raise SystemExit(f"error: the state pieces in {folder} are not numbered 0…{len(pieces) - 1}: "
                         f"{[p.name for p in pieces]}; collect the call's files again")
    return pieces


def _open(pieces):
    return tarfile.open(fileobj=io.BytesIO(b"".join(p.read_bytes() for p in pieces)), mode="r:gz")


def _extract(tar, dest, members=None):
    """tarfile's "data" filter (no absolute paths, no links out) where this Python has it (3.12, 3.11.4+)."""
    tar.extractall(dest, members=members, **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))


def restore(folder, logs, echo=print):
    pieces = _pieces(folder)
    if not pieces:
        echo(f"carry: no state in {folder}")
        return []
    logs = pathlib.Path(logs)
    with _open(pieces) as tar:
        members = tar.getmembers()
        runs = sorted({tuple(pathlib.PurePosixPath(m.name).parts[:2]) for m in members})
        kept = []
        for r in runs:
            name = "/".join(r)
            made = json.load(tar.extractfile(f"{name}/config.json"))["log"]["dir"]
            if made != str(logs):  # log.dir is part of the run's identity: elsewhere it would start afresh
                echo(f"carry: {name}: not restored, it was made with LOGS={made} (this call has {logs}); "
                     f"call again with LOGS={made}")
            elif logs.joinpath(*r).exists():
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
    if not results.is_file():
        echo(f"collect: no results.tgz in {src}: the call ended before it packed; .devcarry/state is left as it was")
        return None
    pieces = _pieces(src)
    if pieces:
        with _open(pieces) as tar:  # whole, before it replaces the earlier state
            tar.getmembers()
    stamp = datetime.datetime.fromtimestamp(results.stat().st_mtime).strftime("%Y%m%d-%H%M%S")
    dest = root / "logs" / "gpu" / f"call-{stamp}"  # one folder a call: a later call overwrites nothing
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(results, "r:gz") as tar:
        _extract(tar, dest)
    state = root / ".devcarry" / "state"
    shutil.rmtree(state, ignore_errors=True)
    if pieces:
        state.mkdir(parents=True)
        for p in pieces:
            shutil.copyfile(p, state / p.name)
    echo(f"collect: results under {dest}; state for the next call: "
         + (f"{state} ({sum(p.stat().st_size for p in pieces) / 2**20:.1f} MiB; name it in carry)" if pieces
            else "none"))
    rows = src / "rows.md"
    if rows.is_file():
        echo(rows.read_text().rstrip())
    return dest


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name, args in (("pack", ("logs", "out")), ("restore", ("folder", "logs")), ("collect", ("files_at",))):
        p = sub.add_parser(name)
        for a in args:
            p.add_argument(a)
    sub.choices["collect"].add_argument("--root", default=".", help="the project root (default: here)")
    a = ap.parse_args()
    if a.cmd == "pack":
        pack(a.logs, a.out)
    elif a.cmd == "restore":
        restore(a.folder, a.logs)
    else:
        collect(a.files_at, a.root)
    sys.exit(0)
