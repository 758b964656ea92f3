"""Who may act: API tokens, end users' sessions and their login links (``credentials``)."""
