"""Running the CLI in a subprocess without blocking, and ending it with all its children."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Mapping, Sequence

from .commands import (
    RunFolder,
    batch_command,
    python_slicer_executable,
    subprocess_environment,
    write_manifest,
)
from .monitor import OutputMonitor


def popen_kwargs() -> dict:
    """Popen options that put the CLI in its own process group (POSIX) / new
    process group without a console window (Windows), so Cancel can end the
    launcher, the Python process and every worker it started."""
    if os.name == "nt":
        flags = subprocess.CREATE_NEW_PROCESS_GROUP | getattr(subprocess, "CREATE_NO_WINDOW", 0)
        return {"creationflags": flags}
    return {"start_new_session": True}


def kill_process_tree(pid: int, timeout: float = 5.0) -> None:
    """End process ``pid`` and all its descendants (started with :func:`popen_kwargs`).

    POSIX: SIGTERM to the process group, SIGKILL after ``timeout`` s if still alive.
    Windows: ``taskkill /T /F``. A process that already ended is not an error.
    """
    if os.name == "nt":
        subprocess.run(["taskkill", "/PID", str(pid), "/T", "/F"], capture_output=True, check=False)
        return
    import time

    try:
        pgid = os.getpgid(pid)
    except ProcessLookupError:
        return
    if pgid == os.getpgid(0):  # never signal our own group (process was not started apart)
        os.kill(pid, signal.SIGKILL)
        return
    try:
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass


class CliRun:
    """One run of the library's CLI in a subprocess, read without blocking.

    Two reader threads queue the process' stdout/stderr lines; :meth:`poll` (called
    from a Qt timer in Slicer, or in a loop by :meth:`wait`) feeds them to an
    :class:`OutputMonitor` on the caller's thread, reports progress, and once the
    process has ended calls ``on_success(run)`` (its return value is kept in
    ``value``) or records the error. The run folder is cleaned up in every case.

    status: ``running``, ``done``, ``failed`` (``error_message`` says why) or
    ``cancelled`` (:meth:`cancel` ended the process tree).
    """

    def __init__(self, command: Sequence[str], env: Mapping[str, str] | None = None,
                 run_folder: RunFolder | None = None, on_success=None, on_progress=None,
                 on_complete=None, cwd: str | os.PathLike | None = None):
        import queue
        import threading
        import time

        self._time = time.monotonic
        self.command = [str(c) for c in command]
        self.run_folder = run_folder
        self.monitor = OutputMonitor()
        self.status = "running"
        self.error_message = ""
        self.value = None
        self.returncode: int | None = None
        self.elapsed = 0.0
        self._on_success = on_success
        self._on_progress = on_progress
        self._on_complete = on_complete
        self._queue: queue.Queue = queue.Queue()
        self._empty = queue.Empty
        self._cancelled = False
        self._start = self._time()
        self.process = subprocess.Popen(
            self.command, env=None if env is None else dict(env), cwd=cwd, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, encoding="utf-8",
            errors="replace", bufsize=1, **popen_kwargs())
        self._threads = [threading.Thread(target=self._read, args=(stream, name), daemon=True)
                         for stream, name in ((self.process.stdout, "stdout"),
                                              (self.process.stderr, "stderr"))]
        for t in self._threads:
            t.start()

    def _read(self, stream, name: str) -> None:
        for line in iter(stream.readline, ""):
            self._queue.put((name, line))
        stream.close()

    def cancel(self) -> None:
        """End the process and its children; the run finishes as ``cancelled``."""
        if self.status == "running" and not self._cancelled:
            self._cancelled = True
            kill_process_tree(self.process.pid)

    def poll(self) -> bool:
        """Handle the output that arrived; finish the run when the process has ended.
        Returns True while the run is still going."""
        if self.status != "running":
            return False
        changed = False
        while True:
            try:
                name, line = self._queue.get_nowait()
            except self._empty:
                break
            if name == "stdout":
                self.monitor.feed_stdout(line)
            else:
                self.monitor.feed_stderr(line)
            changed = True
        if changed and self._on_progress:
            self._on_progress(self.monitor.overall_fraction, self.monitor.status_text)
        if self.process.poll() is None or any(t.is_alive() for t in self._threads) \
                or not self._queue.empty():
            return True
        self._finish()
        return False

    def _finish(self) -> None:
        self.returncode = self.process.returncode
        self.elapsed = self._time() - self._start
        try:
            if self._cancelled:
                self.status = "cancelled"
            elif self.returncode == 0 and self.monitor.result is not None:
                self.value = self._on_success(self) if self._on_success else None
                self.status = "done"
            else:
                self.status = "failed"
                self.error_message = self.monitor.error_message(self.returncode)
        except Exception as exc:  # importing the results failed: report it, never stay "running"
            self.status = "failed"
            self.error_message = f"{type(exc).__name__}: {exc}"
        finally:
            if self.run_folder is not None:
                self.run_folder.cleanup()
        if self._on_complete:
            self._on_complete(self)

    def wait(self, idle=None, interval: float = 0.05, timeout: float | None = None) -> CliRun:
        """Block until the run has finished; ``idle()`` is called between polls (e.g.
        ``slicer.app.processEvents`` to keep Slicer's GUI responsive). With ``timeout``
        (seconds) a run still going by then is cancelled and TimeoutError raised."""
        import time

        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll():
            if deadline is not None and time.monotonic() > deadline:
                self.cancel()
                while self.poll():  # let the cancelled run finish and clean up
                    time.sleep(interval)
                raise TimeoutError(f"{' '.join(self.command[:4])}... still running after {timeout} s; cancelled")
            if idle is not None:
                idle()
            time.sleep(interval)
        return self


def start_batch(items, output_dir, options, temp_dir=None, python=None, environment=None,
                overwrite: bool = False, keep_files: bool = False) -> CliRun:
    """Start ``segment --manifest`` on files (a cohort, no scene); returns the running CliRun.

    items: CE-T1 paths or dicts (see ``commands.write_manifest``). The manifest lives in a
    temporary run folder under ``temp_dir`` that is removed when the run ends.
    """
    run_folder = RunFolder(temp_dir, keep=keep_files)
    try:
        manifest = write_manifest(items, run_folder.path / "manifest.csv")
        command = batch_command(python or python_slicer_executable(), manifest, output_dir, options,
                                overwrite=overwrite)
    except Exception:
        run_folder.cleanup()
        raise
    env = dict(os.environ if environment is None else environment)
    env.update(subprocess_environment(env))
    return CliRun(command, env, run_folder)
