import os
import pathlib
import sys

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


@pytest.fixture(scope="session", autouse=True)
def _quiet_tf():
    from suite.quiet import import_tensorflow

    import_tensorflow()


@pytest.fixture
def data_dir():
    """Real data sets (../shared/data in development); tests that need them skip when it is unset."""
    d = os.environ.get("SUITE_DATA_DIR")
    if not d or not pathlib.Path(d).is_dir():
        pytest.skip("SUITE_DATA_DIR is not set: real data sets unavailable")
    return pathlib.Path(d)


def run_cli(*args, cwd=None, env=None, timeout=600):
    """Run `python -m suite ...` in a subprocess; returns CompletedProcess (text)."""
    import subprocess

    e = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run([sys.executable, "-m", "suite", *map(str, args)], cwd=cwd or ROOT, env=e,
                          capture_output=True, text=True, timeout=timeout)
