"""Meetings: the provider of meeting ids and URLs for admitted guests (Foyer
does no media), dedicated (planned) meetings, connections of a user's
video-conferencing account per workspace, and bookings (docs/meetings.md).

May import: ``protocol``, ``server.access``, ``server.storage``.
"""
