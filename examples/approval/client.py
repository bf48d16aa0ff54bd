"""The app's one Tether client. Every module that defines or sends imports it."""

from tether import Tether

app = Tether(app_id="shop")
