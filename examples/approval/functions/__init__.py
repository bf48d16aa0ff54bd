"""Every function of the app; importing this package registers them."""

from . import order_approval

__all__ = ["order_approval"]
