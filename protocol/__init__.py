"""Foyer's wire protocol, sans I/O: messages, codec, lobby rules, link rules.

Nothing in this package touches a socket, an event loop or Redis; the server
and the Python client both drive it (see tests/protocol/test_purity.py).
"""
