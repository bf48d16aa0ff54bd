"""What the flow talks to outside Tether.

In a real app these are your warehouse and your payment provider. Here they are
stand-ins that log (and keep) what they were asked to do; tests inspect them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

log = logging.getLogger("shop.services")


@dataclass
class Warehouse:
    """Stands in for the warehouse API: records each shipment."""

    shipped: list[str] = field(default_factory=list)

    def ship(self, order_id: str) -> dict[str, str]:
        self.shipped.append(order_id)
        log.info("order %s shipped", order_id)
        return {"order_id": order_id, "tracking": f"TRK-{order_id}"}


@dataclass
class Payments:
    """Stands in for the payment provider: records each refund."""

    refunded: list[str] = field(default_factory=list)

    def refund(self, order_id: str) -> dict[str, str]:
        self.refunded.append(order_id)
        log.info("order %s refunded", order_id)
        return {"order_id": order_id, "refund": f"RF-{order_id}"}


warehouse = Warehouse()
payments = Payments()
