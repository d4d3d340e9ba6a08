import os
import pathlib
import sys
import tempfile

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# JAX's persistent compilation cache, shared by the test processes and the `suite` processes they start: each JAX
# process otherwise compiles every initializer and step afresh (~10 s of a small run on 2 cores). An entry's key
# is the computation and the compiler's version, so what comes back is what would have been compiled.
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", f"{tempfile.gettempdir()}/suite-tests-jax-{os.getuid()}")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")
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


@pytest.fixture
def segment_lists(monkeypatch):
    """Every callbacks.Segments the code under test builds (a run's callback list), in order."""
    from suite import callbacks as cb

    made, init = [], cb.Segments.__init__

    def record(self, *a, **k):
        init(self, *a, **k)
        made.append(self)

    monkeypatch.setattr(cb.Segments, "__init__", record)
    return made


def run_cli(*args, cwd=None, env=None, timeout=600):
    """Run `python -m suite ...` in a subprocess; returns CompletedProcess (text)."""
    import subprocess

    e = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run([sys.executable, "-m", "suite", *map(str, args)], cwd=cwd or ROOT, env=e,
                          capture_output=True, text=True, timeout=timeout)


def cli_here(*args):
    """`python -m suite ...` in this process, where TensorFlow is already loaded (no start-up of its own, which
    costs a process ~10 s on 2 cores); for what needs no process of its own. Returns (exit status, stdout, stderr)."""
    import contextlib
    import io

    from suite import cli

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main([str(a) for a in args])
    return code, out.getvalue(), err.getvalue()
