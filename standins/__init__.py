"""Loopback stand-ins for the cloud providers, speaking their real wire protocols.

Test and benchmark support: this machine cannot reach Google or ElevenLabs, so the real
plugin code is pointed at these servers instead. Each serves on 127.0.0.1, renders real
speech (or transcribes real speech) with the local engines, and takes faults on command
through its `Faults`: latency, errors, hangs and dropped connections.
"""

from .faults import Faults
from .runner import Standins, start_standins

__all__ = ["Faults", "Standins", "start_standins"]
