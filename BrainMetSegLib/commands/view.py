"""``brainmetseg view``: review and correct a result folder in a web browser (Slicer's views)."""

from __future__ import annotations

import socket
import sys
import time

from ..errors import BrainMetSegError, InputError

DEFAULT_PORT = 8080


class MissingExtraError(BrainMetSegError):
    """The optional ``[web]`` extra is not installed."""

    exit_code = 6


def add_arguments(p) -> None:
    p.add_argument("outdir", metavar="OUTDIR",
                   help="a result folder of `brainmetseg segment`, or an output folder of `brainmetseg compare`")
    p.add_argument("--image", metavar="CE_T1", help="the CE-T1 (default: the input recorded in run.json)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: this machine only; 0.0.0.0 = every interface)")
    p.add_argument("--port", type=int, metavar="N",
                   help=f"port (default: the first free one from {DEFAULT_PORT})")


def check_host(host: str) -> None:
    """:class:`InputError` when ``host`` is no address of this machine (a typo, or another machine's)."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((host, 0))
    except (OSError, UnicodeError) as exc:
        raise InputError(f"--host {host}: cannot listen on this address ({exc.strerror or exc}); give an address "
                         "of this machine, e.g. 127.0.0.1 (this machine only) or 0.0.0.0 (every interface).") from None


def free_port(host: str, start: int = DEFAULT_PORT, tries: int = 50) -> int:
    for port in range(start, start + tries):
        if port_is_free(host, port):
            return port
    raise InputError(f"no free port in {start}-{start + tries - 1} on {host}; pass --port.")


def port_is_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def run(args) -> int:
    from ..viewer import WEB_EXTRA_HINT, missing_web_dependencies
    from ..viewer.longitudinal import CompareFolder, is_compare_folder
    from ..viewer.result import ResultFolder

    # bad folders fail before the slow imports
    if is_compare_folder(args.outdir):
        if args.image:
            raise InputError(f"{args.outdir}: --image is for a segment result; a compare folder names its scans.")
        result = CompareFolder.open(args.outdir)
    else:
        result = ResultFolder.open(args.outdir, args.image)
    missing = missing_web_dependencies()
    if missing:
        raise MissingExtraError(f"the viewer needs {', '.join(missing)} (the optional [web] extra): "
                                f"{WEB_EXTRA_HINT}")
    if args.port is not None and not 0 < args.port < 65536:
        raise InputError(f"--port {args.port}: not a port number (1-65535).")
    check_host(args.host)
    port = args.port if args.port is not None else free_port(args.host)
    if args.port is not None and not port_is_free(args.host, port):
        raise InputError(f"--port {port}: already in use on {args.host}; pick another.")

    from ..viewer.logfile import log_to_file

    # VTK's and Slicer's warnings go to OUTDIR/view.log from here on; the terminal gets the URL
    # and errors (on any exit, stderr is the terminal again for the command's error line)
    with log_to_file(result.folder, until_exit=True) as log:
        print(f"brainmetseg view: VTK/Slicer messages go to {log.path}", file=log.terminal)
        t0 = time.perf_counter()
        app = _make_app(result)
        host_shown = "127.0.0.1" if args.host in ("0.0.0.0", "") else args.host
        url = f"http://{host_shown}:{port}/"
        print(f"brainmetseg view: {result.folder} ready in {time.perf_counter() - t0:.1f} s", file=log.terminal)
        print(f"brainmetseg view: open {url} in a browser (Ctrl-C stops)", flush=True)
        # trame reads its own options from sys.argv; ours are not its.
        argv, sys.argv = sys.argv, sys.argv[:1]
        try:
            app.server.start(host=args.host, port=port, open_browser=False, show_connection_info=False,
                             timeout=0)
        finally:
            sys.argv = argv
    return 0


def _make_app(result):
    """The trame app of a result folder or a compare folder (the slow imports happen here)."""
    from ..viewer import render  # noqa: F401  (sets VTK_DEFAULT_OPENGL_WINDOW before VTK loads)
    from ..viewer.longitudinal import CompareFolder

    if isinstance(result, CompareFolder):
        from ..viewer.compare_app import CompareApp

        return CompareApp(result)
    from ..viewer.app import ViewerApp

    return ViewerApp(result)
