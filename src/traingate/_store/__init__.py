"""The store: the two database backends behind one interface (``db``), the migrations
(``schema``), row-level reads and writes (``store``), build jobs (``jobs``), and the tables as
Arrow batches from one read snapshot (``export``, ``reader_process``)."""
