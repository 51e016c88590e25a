"""Log lines: JSON objects in production, readable lines in development, each with the
``extra`` fields of its record."""

from __future__ import annotations

import json
import logging
import logging.config
import re
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    from graphql_api.settings import Settings

_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}
# What a value may be written as without quotes and still read back as one token.
_BARE = re.compile(r"^[^\s\"'=\\]+$")


def _extra(record: logging.LogRecord) -> Iterator[tuple[str, Any]]:
    """The fields given with ``extra=``, in the order given."""
    for key, value in vars(record).items():
        if key not in _STANDARD and not key.startswith("_"):
            yield key, value


class JsonFormatter(logging.Formatter):
    """One JSON object per line (orjson: an access line per request is on the hot path)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._second = -1
        self._stamp = ""

    def _time(self, record: logging.LogRecord) -> str:
        second = int(record.created)
        if second != self._second:  # formatted once per second, not once per line
            self._stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self._second = second
        return f"{self._stamp}.{int(record.msecs):03d}Z"

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self._time(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(_extra(record))
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


def _readable(value: Any) -> str:
    if isinstance(value, str):
        return value if _BARE.match(value) else json.dumps(value)
    if value is None or isinstance(value, bool | int | float):
        return json.dumps(value)
    return json.dumps(value, default=str, separators=(",", ":"))


class ReadableFormatter(logging.Formatter):
    """``12:00:01 INFO  graphql_api.http  message key=value ...``: one line per record for
    a person at a terminal (local time, to the second), the ``extra`` fields as
    ``key=value`` (quoted when they hold spaces), a traceback on the lines after."""

    def format(self, record: logging.LogRecord) -> str:
        clock = time.strftime("%H:%M:%S", time.localtime(record.created))
        line = f"{clock} {record.levelname} {record.name}  {record.getMessage()}"
        fields = " ".join(f"{key}={_readable(value)}" for key, value in _extra(record))
        if fields:
            line = f"{line}  {fields}"
        if record.exc_info:
            line = f"{line}\n{self.formatException(record.exc_info)}"
        return line


def logging_config(settings: Settings | None = None, *, level: str = "INFO") -> dict[str, Any]:
    """The ``dictConfig`` uvicorn applies in every worker process: readable lines in
    development, JSON lines otherwise (and without settings)."""
    readable = settings is not None and settings.is_development
    formatter = ReadableFormatter if readable else JsonFormatter
    handler = {"class": "logging.StreamHandler", "formatter": "lines", "stream": "ext://sys.stderr"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"lines": {"()": f"{__name__}.{formatter.__name__}"}},
        "handlers": {"stderr": handler},
        "loggers": {
            "graphql_api": {"handlers": ["stderr"], "level": level, "propagate": False},
            # The server's own failures (e.g. an exception outside the app) the same way.
            "uvicorn": {"handlers": ["stderr"], "level": "WARNING", "propagate": False},
        },
    }


def configure_logging(settings: Settings | None = None, *, level: str = "INFO") -> None:
    logging.config.dictConfig(logging_config(settings, level=level))
