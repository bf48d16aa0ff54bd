"""End-to-end tests of the ``tether`` command line, as a user runs it."""
