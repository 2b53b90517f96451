"""Reaching a host who is not looking, and the integrator's backend: the
coalesced email (``email``) and signed webhooks delivered from each host's
outbox (``webhooks``).

May import: ``hosts.settings``, ``access``, ``storage``, ``protocol`` and the
leaves (``metrics``, ``i18n``).
"""
