"""Retention: what the policies keep and for how long (``rules``), and where every account and
report stands against it (``status``)."""
