"""Host settings: validated partial updates from the API or a device, applied
by compare-and-set in the store, announced to every device.

May import: ``storage``, ``protocol``.
"""
