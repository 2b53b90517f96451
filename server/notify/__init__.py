"""Reaching a host who is not looking: the coalesced email (``email``);
webhooks will land here too.

May import: ``storage``, ``protocol``.
"""
