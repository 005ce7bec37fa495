"""The order pipeline demo (``make demo``): the stack, every service, a few hundred orders.

Each order is built for one scenario (a normal order, a card that is declined, a carrier that
is down, ...) with the saga outcome it must end in; the demo exits 0 only if every saga did.
"""
