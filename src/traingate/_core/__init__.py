"""The pure core: events, the policy and its decision plan, facts, de-identification, a report's
snapshot and a build's manifest. Frozen dataclasses and functions; nothing here opens a store,
runs an engine or serves a request (the import contract in ``make lint`` holds it to that)."""
