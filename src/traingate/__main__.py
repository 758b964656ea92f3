"""``python -m traingate``: the same command line as ``traingate``."""

from traingate.cli import main

main()
