"""Every function of the app; importing this package registers them."""

from . import onboarding_flow, record_project

__all__ = ["onboarding_flow", "record_project"]
