"""The audit log: ``log`` keeps the keyed hash chain and verifies it; ``actions`` says what
each audited act records."""
