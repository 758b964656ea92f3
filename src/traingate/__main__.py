"""``python -m traingate``: the same command line as ``traingate``."""

from traingate._cli import main

main()
