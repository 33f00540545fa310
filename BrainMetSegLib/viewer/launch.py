"""Run ``brainmetseg view`` in a child process and wait for its URL (tests, screenshot script)."""

from __future__ import annotations

import collections
import os
import selectors
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def start_viewer(result: str | Path, port: int, timeout_s: float = 180.0,
                 extra_args: tuple[str, ...] = ()) -> tuple[subprocess.Popen, str]:
    """Start ``python -m BrainMetSegLib view RESULT --port PORT``; return (process, URL).

    This checkout's library comes first on the child's path. Raises RuntimeError when the
    viewer exits or prints no URL within ``timeout_s`` seconds (its stderr is in the message).
    """
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH"))
                                                      if p))
    proc = subprocess.Popen([sys.executable, "-m", "BrainMetSegLib", "view", str(result), "--port", str(port),
                             *extra_args], cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    # stderr is read from the start (VTK's warnings can fill a pipe before the URL is printed);
    # its last lines go into the error message.
    tail = _drain(proc.stderr)
    proc.stderr_tail = tail
    selector = selectors.DefaultSelector()
    selector.register(proc.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            proc.wait()
            time.sleep(0.2)  # let the reader take the last lines
            raise RuntimeError(f"viewer exited with code {proc.returncode}: {''.join(tail)[-2000:]}")
        if selector.select(timeout=1.0):
            line = proc.stdout.readline()
            if "http://" in line:
                return proc, line[line.index("http://"):].split()[0]
    stop_viewer(proc)
    raise RuntimeError(f"viewer printed no URL within {timeout_s:.0f} s: {''.join(tail)[-2000:]}")


def _drain(stream) -> collections.deque:
    """Read ``stream`` to its end in a thread; returns the deque that keeps its last 50 lines."""
    import threading

    tail: collections.deque = collections.deque(maxlen=50)
    threading.Thread(target=lambda: [tail.append(line) for line in stream], daemon=True).start()
    return tail


def stop_viewer(proc: subprocess.Popen) -> None:
    """Terminate the viewer process started by :func:`start_viewer` (kill after 20 s)."""
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
