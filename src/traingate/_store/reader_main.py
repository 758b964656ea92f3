"""The snapshot reader's process: ``python -m traingate._store.reader_main``, which
``reader_process.SnapshotServer`` starts, runs ``reader_process.main`` without NumPy.

pyarrow imports NumPy whenever it is installed, which was about half of this process's start
(0.45 -> 0.23 s of CPU for ``import pyarrow, pyarrow.compute``, measured on a CI machine) and
is paid once per SQLite store a process reads snapshots of. The reader makes Arrow batches,
IPC streams and Parquet files from the ADBC driver's Arrow data and never a NumPy array, so
NumPy is marked missing before pyarrow loads (``sys.modules[name] = None``: an import of it
raises ImportError, which pyarrow takes as "not installed").
"""

from __future__ import annotations

import sys
from importlib import import_module

if __name__ == "__main__":
    sys.modules["numpy"] = None  # type: ignore[assignment]
    import_module("traingate._store.reader_process").main()
