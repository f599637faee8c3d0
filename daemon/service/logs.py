"""Logging for the daemon: stderr in a form journald reads well, plus an optional file.

Under systemd, stderr goes to the journal, which stamps every line itself and understands a
'<N>' syslog priority prefix; printing our own timestamps there would only duplicate them.
"""

from __future__ import annotations

import contextlib
import logging
import logging.handlers
import os
import sys
from collections.abc import Mapping
from pathlib import Path

from sarai.daemon.paths import open_private, private_dir

_PRIORITY = {
    logging.CRITICAL: 2, logging.ERROR: 3, logging.WARNING: 4, logging.INFO: 6, logging.DEBUG: 7,
}
TIMESTAMPED = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JournalFormatter(logging.Formatter):
    """'<priority>logger: message', the prefix journald turns into the entry's priority."""

    def format(self, record: logging.LogRecord) -> str:
        prio = _PRIORITY.get(record.levelno, 6 if record.levelno < logging.WARNING else 3)
        text = f"{record.name}: {record.getMessage()}"
        if record.exc_info and record.levelno >= logging.ERROR:
            text += "\n" + self.formatException(record.exc_info)
        # Every line of a multi-line message keeps the priority in the journal.
        return "\n".join(f"<{prio}>{line}" for line in text.splitlines())


def under_journal(env: Mapping[str, str] | None = None, stream=None) -> bool:
    """Whether stderr is connected to the journal ($JOURNAL_STREAM names its device:inode)."""
    env = os.environ if env is None else env
    value = env.get("JOURNAL_STREAM")
    if not value:
        return False
    try:
        dev, ino = (int(x) for x in value.split(":"))
        st = os.fstat((stream or sys.stderr).fileno())
    except (ValueError, OSError, AttributeError):
        return True  # set but unverifiable: trust it rather than print doubled timestamps
    return (st.st_dev, st.st_ino) == (dev, ino)


def setup_logging(level: int, *, journal: bool, log_file: Path | None = None) -> None:
    """Replace the root handlers: stderr (journal style or timestamped), and `log_file`."""
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
        h.close()
    err = logging.StreamHandler(sys.stderr)
    err.setFormatter(JournalFormatter() if journal else logging.Formatter(TIMESTAMPED))
    root.addHandler(err)
    if log_file is not None:
        private_dir(log_file.parent)
        fh = PrivateRotatingFileHandler(log_file, maxBytes=1_000_000, backupCount=2,
                                        encoding="utf-8")
        fh.setFormatter(logging.Formatter(TIMESTAMPED))
        root.addHandler(fh)
    root.setLevel(level)


class PrivateRotatingFileHandler(logging.handlers.RotatingFileHandler):
    """A rotating log that only its owner can read: transcripts appear in it.

    The standard handler opens each new file with the umask's mode (0644 as a rule), so
    after the first rotation the log would be readable by everyone again.
    """

    def __init__(self, filename: Path, **kw) -> None:
        super().__init__(filename, **kw)
        for i in range(1, self.backupCount + 1):  # backups an older version left looser
            with contextlib.suppress(OSError):
                backup = Path(f"{self.baseFilename}.{i}")
                if backup.stat().st_mode & 0o077:
                    os.chmod(backup, 0o600)

    def _open(self):
        fd = open_private(Path(self.baseFilename), os.O_WRONLY | os.O_APPEND)
        return open(fd, self.mode, encoding=self.encoding, errors=self.errors)  # noqa: SIM115
