"""Foyer."""
