"""Calendar sync (issue 15): Foyer keeps a host's CalDAV calendars in step,
rewriting one-off events that hold the personal link (the rules of
``server.meetings.calendar``) in place on the host's own calendar.

May import ``server.meetings``, ``server.access`` and ``server.storage``.
"""
