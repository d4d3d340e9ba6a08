"""`python -m suite board`: TensorBoard on the suite's run directories, through TensorBoard's own Python API
(`tensorboard.program.TensorBoard`: the same server, plugins and fast loader as the `tensorboard` command).

Listens on 127.0.0.1 by default (the logs stay on this machine; `--host 0.0.0.0` shares them), prints the URL
and serves until Ctrl-C.
"""

import pathlib
import signal
import sys
import time

from .errors import UserError


def start(logdir, host="127.0.0.1", port=None, reload_interval=None):
    """Start TensorBoard in a background thread of this process; returns its URL. port None: 6006 or the next
    free port after it (TensorBoard's own search)."""
    from tensorboard import program

    logdir = pathlib.Path(logdir)
    if not logdir.is_dir():
        raise UserError(f"log directory {logdir} does not exist: train something first "
                        "(`python -m suite run lenet5`) or pass --logdir PATH")
    argv = [None, "--logdir", str(logdir), "--host", host]
    if port is not None:
        argv += ["--port", str(port)]
    if reload_interval is not None:
        argv += ["--reload_interval", str(reload_interval)]
    tb = program.TensorBoard()
    try:
        tb.configure(argv=argv)
        return tb.launch()
    except program.TensorBoardServerException as e:
        hint = " (pick another with --port, or leave --port out to take the next free one)" if port else ""
        raise UserError(f"cannot start TensorBoard: {e.msg.strip()}{hint}") from None
    except ValueError as e:  # e.g. a flag TensorBoard rejects
        raise UserError(f"cannot start TensorBoard: {e}") from None


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def serve(logdir, host="127.0.0.1", port=None, echo=print):
    """Start TensorBoard and block until Ctrl-C; returns the exit status (0)."""
    url = start(logdir, host, port)
    n = sum(1 for _ in pathlib.Path(logdir).rglob("config.json"))
    echo(f"TensorBoard on {logdir} ({n} run{'s' * (n != 1)}): {url}")
    echo("press Ctrl-C to stop")
    sys.stdout.flush()
    signal.signal(signal.SIGTERM, _interrupt)  # `kill` stops it as cleanly as Ctrl-C
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:  # started in the background by a shell
        signal.signal(signal.SIGINT, _interrupt)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        echo("TensorBoard stopped")
    return 0
