"""``Traingate``: the one object the CLI, the HTTP API and library users talk to.

``Traingate.open(settings)`` opens the policies, the key file, the store (migrating it) and the
vault once; the operations are grouped by area, each an attribute of the facade sharing what
it opened:

- ``tg.events`` (``events.py``): ingest, and the events a user starts (consent, deletion);
- ``tg.privacy`` (``privacy.py``): explain, a conversation's view, an account's answer, the
  console's search;
- ``tg.datasets`` (``datasets.py``): builds, verification, lineage, the lake, policy show
  and diff;
- ``tg.feedback`` (``feedback.py``): submitting, showing and deleting reports, key rotation;
- ``tg.retention`` (``retention.py``): what expires when, and the purge;
- ``tg.access`` (``access.py``): API tokens and end-user sessions;
- ``tg.audit`` (``audit.py``): the log, the one helper every area records through, its
  verification and entries.

The edges (_cli/, _api/, _web/) parse, call one area method, and format.
"""

from traingate._facade.privacy import Explanation, MessageExplanation
from traingate._facade.traingate import Traingate

__all__ = ["Explanation", "MessageExplanation", "Traingate"]
