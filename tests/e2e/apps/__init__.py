"""Apps the end-to-end tests serve with ``tether worker``."""
