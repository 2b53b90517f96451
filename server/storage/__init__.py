"""Redis, the one store and the bus: ``Store`` (every read and write of state),
its Lua scripts (``lua/``), the ``Batcher`` (one pipeline per loop pass on
one connection) and the client factory (standalone or Cluster).

May import: ``protocol`` only.
"""
