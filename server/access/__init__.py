"""Who may connect: host and guest JWTs and API keys (``tokens``), allowed
origins and the client's address behind trusted proxies (``origins``).

May import: ``protocol``.
"""
