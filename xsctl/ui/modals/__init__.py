"""Dialogs. Each returns a typed result; escape cancels."""
