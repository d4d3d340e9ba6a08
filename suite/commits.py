"""The backup commits of a run directory on disk (`backup/epoch-E[-step-S]/`: state.json with its digest and the
files' sha256, the weights, the arrays): naming, listing, reading and choosing the one to resume from. Written by
callbacks.Backup; read here without Keras, so `suite list --runs` answers without loading TensorFlow."""

import hashlib
import json
import os
import pathlib

from .errors import UserError

WEIGHTS = "backup.weights.h5"
STATE = "state.json"


def commit_name(epoch, step):
    return f"epoch-{epoch:05d}" + (f"-step-{step:07d}" if step else "")


def newest_first(backup_dir):
    """Commits in `backup_dir`, newest first: [((epoch, step), path)]. `epoch-E` holds E finished epochs,
    `epoch-E-step-S` E finished epochs and S batches of the next."""
    out = []
    for p in pathlib.Path(backup_dir).glob("epoch-*"):
        bits = p.name.split("-")
        try:
            pos = (int(bits[1]), int(bits[3]) if len(bits) == 4 and bits[2] == "step" else 0)
        except (ValueError, IndexError):
            continue
        if len(bits) in (2, 4):
            out.append((pos, p))
    return sorted(out, reverse=True)


def file_sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def state_digest(state):
    return hashlib.sha256(json.dumps(state, sort_keys=True).encode()).hexdigest()


def read_commit(path, verify_files=True):
    """(state, None) for a sound commit folder, (None, why) for a damaged one: state.json torn or edited (its
    digest), a file missing, truncated or changed (its sha256; verify_files=False checks presence only)."""
    path = pathlib.Path(path)
    try:
        state = json.loads((path / STATE).read_text())
    except OSError:
        return None, f"{STATE} is missing"
    except ValueError:
        return None, f"{STATE} is not valid JSON (torn or edited)"
    if not isinstance(state, dict):
        return None, f"{STATE} is not a backup state"
    if "format" not in state and "digest" not in state:  # written before commits carried checksums
        ok = isinstance(state.get("epoch"), int) and (path / WEIGHTS).is_file()
        return ({**state, "step": 0, "path": str(path)}, None) if ok else (None, "an old backup without weights")
    digest = state.pop("digest", None)
    if digest != state_digest(state):
        return None, f"{STATE} does not match its checksum (edited or torn)"
    for name, sha in state.get("files", {}).items():
        f = path / name
        if not f.is_file():
            return None, f"{name} is missing"
        if verify_files and file_sha256(f) != sha:
            return None, f"{name} does not match its checksum (truncated or changed)"
    return {**state, "path": str(path)}, None


def committed(backup_dir, verify_files=False):
    """The newest sound commit's state (a dict with epoch, step, iterations, history, ...), or None."""
    for _, p in newest_first(backup_dir):
        state, _ = read_commit(p, verify_files)
        if state is not None:
            return state
    return None


def restore_point(backup_dir, echo=print):
    """The state a run resumes from: the newest sound commit. Damaged newer ones are set aside as
    `damaged-<name>` (kept for inspection, deleted with the backup) with one warning line each. None when
    nothing was ever committed; a UserError, with the directory untouched, when commits exist but none is sound."""
    bad = []
    for _, p in newest_first(backup_dir):
        state, why = read_commit(p)
        if state is None:
            bad.append((p, why))
            continue
        for q, why in bad:
            echo(f"warning: backup {q.name} is damaged ({why}); resuming from {p.name} instead")
            os.rename(q, q.with_name(f"damaged-{q.name}"))
        return state
    if bad:
        q, why = bad[0]
        raise UserError(f"cannot resume {pathlib.Path(backup_dir).parent}: every backup is damaged ({q.name}: {why}); "
                        "the directory is left as it is for inspection; start over with --fresh")
    return None
