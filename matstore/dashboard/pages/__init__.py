"""Dashboard pages, one per file, run by :mod:`matstore.dashboard.app`."""
