"""Signals of the notifications app.

`deliveries_sent` is sent by the dispatcher inside the transaction that marks deliveries
sent, with `deliveries` (the Delivery rows, channel loaded). CostSim listens to mark its
breaker incidents' alerts sent; the app itself imports no other app that listens.
"""

from django.dispatch import Signal

deliveries_sent = Signal()
