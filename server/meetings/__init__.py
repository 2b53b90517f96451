"""The meeting provider: meeting ids and URLs for admitted guests (Foyer does
no media). Planned meetings and other providers will land here.

May import: ``protocol``.
"""
