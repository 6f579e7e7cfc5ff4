"""Live listening (``earmark listen``): events within seconds from microphones, cameras and streams.

A wing of its own: it imports the core (decoding, scoring, post-processing) and the core never
imports it. Modules: :mod:`.live_events` (what is emitted), :mod:`.sinks` (where it goes: built
from specs, with :mod:`.delivery`, :mod:`.files`, :mod:`.webhook` and :mod:`.mqtt`).
"""
