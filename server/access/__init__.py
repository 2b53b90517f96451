"""Who may connect: host and guest JWTs and API keys (``tokens``), allowed
origins and the client's address behind trusted proxies (``origins``), and
the OAuth authorization server that connects a host's account (``oauth``).

May import: ``protocol``, ``storage`` (``oauth``: its records).
"""
