"""Store-and-forward: a durable local spool between the pipeline and the API (docs/spool.md).

- :class:`SpoolStore`: the SQLite file (WAL), bounded, used from one thread;
- :class:`SpoolSink`: the pipeline's sink: "delivered" = committed to the spool, so it acknowledges;
- :class:`Forwarder`: drains the spool to the real sink, deletes what the API accepted and
  dead-letters what it refused.
"""

from consumer.errors import SpoolFailure
from consumer.spool.forwarder import Forwarder, ForwarderStats
from consumer.spool.sink import SpoolSink
from consumer.spool.store import Claim, SpoolStore

__all__ = ["Claim", "Forwarder", "ForwarderStats", "SpoolFailure", "SpoolSink", "SpoolStore"]
