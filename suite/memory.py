"""Peak host memory of one run: results.json's `peak_rss_mb`.

Hand-written because no library measures the peak resident memory of an *interval*: `resource.getrusage`'s
ru_maxrss and psutil report the peak since the process started (a tuner trial or a study arm would inherit the
peak of every run before it in the same process), and sampling RSS from a thread misses short peaks. Linux (≥ 4.0)
can reset the kernel's own peak counter: writing 5 to /proc/self/clear_refs sets VmHWM ("high water mark") to the
current RSS, and /proc/self/status then reports the exact peak since that moment. Elsewhere (other OSes, a /proc
that refuses the write) the figure is None. Host memory only: what a GPU holds is not counted.
"""

import re

CLEAR_REFS = "/proc/self/clear_refs"
STATUS = "/proc/self/status"


def _status_kb():
    """{"VmHWM": kB, "VmRSS": kB} from /proc/self/status, or None."""
    try:
        with open(STATUS) as f:
            found = dict(re.findall(r"^(VmHWM|VmRSS):\s+(\d+)\s*kB", f.read(), re.M))
    except OSError:
        return None
    if len(found) != 2:
        return None
    return {k: int(v) for k, v in found.items()}


def start():
    """Reset the peak counter to the current RSS; returns that RSS in kB (the baseline), or None."""
    try:
        with open(CLEAR_REFS, "w") as f:
            f.write("5")
    except OSError:
        return None
    s = _status_kb()
    return s["VmRSS"] if s else None


def peak_mb(baseline_kb):
    """Peak RSS since `start()` above its baseline, in MB (10⁶ bytes, one decimal), or None."""
    if baseline_kb is None:
        return None
    s = _status_kb()
    if s is None:
        return None
    return round((max(s["VmHWM"], s["VmRSS"], baseline_kb) - baseline_kb) * 1024 / 1e6, 1)
