"""Secret detection with detect-secrets (its default plugins and filters).

A file in which any plugin finds a potential secret is skipped whole: it never
reaches an index, a training set or a prompt.
"""

from __future__ import annotations

import threading
from pathlib import Path

_lock = threading.Lock()  # detect-secrets keeps its settings in a global


def has_secret(path: Path) -> bool:
    from detect_secrets.core import scan
    from detect_secrets.settings import default_settings

    with _lock, default_settings():
        for _ in scan.scan_file(str(path)):
            return True
    return False
