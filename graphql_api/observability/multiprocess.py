"""The directory where worker processes keep their metrics (``PROMETHEUS_MULTIPROC_DIR``).

prometheus-client chooses its multiprocess mode when it is imported, from this variable,
so ``graphql-api serve`` sets it before anything imports the client and before uvicorn
starts its workers (which inherit it). The directory holds one file per process and
kind of metric; a scrape answered by any worker adds them up.

By default ``serve`` makes a fresh private directory per start and removes it at exit, so
no count of a previous run is ever added in. An operator may set
``PROMETHEUS_MULTIPROC_DIR`` instead (a directory of this service's own, e.g. on a tmpfs):
``serve`` then empties it of metric files at start and leaves the directory in place.
"""

from __future__ import annotations

import atexit
import glob
import os
import shutil
import tempfile

VARIABLE = "PROMETHEUS_MULTIPROC_DIR"


def multiprocess_dir() -> str | None:
    """The directory this process's metrics go to, if serve (or the operator) set one."""
    return os.environ.get(VARIABLE) or None


def prepare_directory() -> str:
    """Set up the directory for this server start (call before importing prometheus_client
    and before starting workers); it is cleaned up when this process exits."""
    given = multiprocess_dir()
    if given is not None:
        os.makedirs(given, exist_ok=True)
        for path in glob.glob(os.path.join(given, "*.db")):
            os.remove(path)  # a previous run's counts must not be added to this one's
        return given
    directory = tempfile.mkdtemp(prefix="graphql-api-metrics-")
    os.environ[VARIABLE] = directory
    pid = os.getpid()

    def remove() -> None:
        # Only the process that made it: a forked child exiting must not pull it away.
        if os.getpid() == pid:
            shutil.rmtree(directory, ignore_errors=True)

    atexit.register(remove)
    return directory
