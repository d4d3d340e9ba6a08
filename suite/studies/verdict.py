"""Judging a claim from the numbers. Each comparison "a OP b" of the metric's values over seeds gets:

- exact, when both arms give the same value for every seed (at least two) (parameter counts, a deterministic figure): the
  difference itself decides — "a > b" holds iff mean(a) > mean(b); "a ~ b" iff |difference| ≤ margin;
- otherwise Welch's two-sample t-test (unequal variances; scipy.stats.ttest_ind) at level alpha: "a > b" is
  supported when the difference is significant and positive, contradicted when significant and negative, and
  inconclusive when not significant. "a ~ b" (no difference) uses the two one-sided tests (TOST) against ±margin:
  supported when both reject (the difference lies within the margin), contradicted when Welch's test finds a
  difference and TOST does not bound it, inconclusive otherwise.

Fewer than two values in an arm (a diverged arm, one seed) is inconclusive, never a verdict. The overall verdict is
supported when every comparison is, contradicted when any is, inconclusive otherwise.
"""

import math
import warnings

import numpy as np

SUPPORTED, CONTRADICTED, INCONCLUSIVE = "supported", "contradicted", "inconclusive"


def _finite(values):
    return [float(v) for v in values if v is not None and math.isfinite(float(v))]


def compare(a, b, op, alpha=0.05, margin=0.01):
    """The verdict on "a OP b" (op in > < ~) for the values of two arms, with the test and figures used."""
    with warnings.catch_warnings():  # scipy warns when one arm has no spread; the test is still defined
        warnings.simplefilter("ignore", RuntimeWarning)
        return _compare(a, b, op, alpha, margin)


def _compare(a, b, op, alpha, margin):
    sign = -1 if op == "<" else 1  # the direction the claim expects mean(a) − mean(b) to have
    a, b = _finite(a), _finite(b)
    out = {"n": [len(a), len(b)], "difference": None, "ci": None, "p": None, "test": None}
    if not a or not b:
        return {**out, "verdict": INCONCLUSIVE, "why": "an arm has no finite values (diverged or failed runs)"}
    diff = float(np.mean(a) - np.mean(b))
    out["difference"] = diff
    if len(a) < 2 or len(b) < 2:  # one value cannot tell a constant from a lucky draw
        return {**out, "verdict": INCONCLUSIVE, "why": "a verdict needs at least 2 seeds per arm"}
    if len(set(a)) == 1 and len(set(b)) == 1:  # constant within each arm: the difference is exact
        out["test"] = "exact (no spread over seeds)"
        ok = abs(diff) <= margin if op == "~" else sign * diff > 0
        return {**out, "verdict": SUPPORTED if ok else CONTRADICTED,
                "why": f"exact difference {diff:+.6g}" + (f" vs margin ±{margin:g}" if op == "~" else "")}
    from scipy import stats

    welch = stats.ttest_ind(a, b, equal_var=False)
    p = float(welch.pvalue)
    try:
        ci = welch.confidence_interval(1 - alpha)
        out["ci"] = [float(ci.low), float(ci.high)]
    except (AttributeError, ValueError):
        pass
    out["p"] = p if math.isfinite(p) else 1.0
    if op != "~":
        out["test"] = f"Welch's t-test, two-sided, p < {alpha:g}"
        if out["p"] < alpha:
            v = SUPPORTED if sign * diff > 0 else CONTRADICTED
            return {**out, "verdict": v, "why": f"significant difference {diff:+.4g} (p = {out['p']:.3g})"}
        return {**out, "verdict": INCONCLUSIVE, "why": f"difference {diff:+.4g} not significant (p = {out['p']:.3g})"}
    # "~": equivalence within ±margin by two one-sided tests
    lo = stats.ttest_ind(np.add(a, margin), b, equal_var=False, alternative="greater").pvalue
    hi = stats.ttest_ind(np.subtract(a, margin), b, equal_var=False, alternative="less").pvalue
    p_tost = float(max(lo, hi)) if math.isfinite(max(lo, hi)) else 1.0
    out["test"] = f"TOST (two one-sided Welch tests) within ±{margin:g}, p < {alpha:g}"
    out["p_tost"] = p_tost
    if p_tost < alpha:
        return {**out, "verdict": SUPPORTED, "why": f"difference {diff:+.4g} within ±{margin:g} (TOST p = {p_tost:.3g})"}
    if out["p"] < alpha:
        return {**out, "verdict": CONTRADICTED,
                "why": f"significant difference {diff:+.4g} (Welch p = {out['p']:.3g}), not bounded by ±{margin:g}"}
    return {**out, "verdict": INCONCLUSIVE,
            "why": f"difference {diff:+.4g}: neither shown (p = {out['p']:.3g}) nor bounded (TOST p = {p_tost:.3g})"}


def judge(claim, values, alpha=0.05, margin=0.01):
    """(overall verdict, [per-comparison results]) for claim [(a, op, b)] and values {arm: [per seed]}."""
    parts = [{"comparison": f"{a} {op} {b}", **compare(values[a], values[b], op, alpha, margin)}
             for a, op, b in claim]
    verdicts = {p["verdict"] for p in parts}
    overall = (CONTRADICTED if CONTRADICTED in verdicts else SUPPORTED if verdicts == {SUPPORTED} else INCONCLUSIVE)
    return overall, parts
