"""The sandbox gateway: a real HTTP server standing in for WhatsApp (Cloud API, WAHA and
Evolution API dialects, faults included) for tests, demos, benchmarks and campaign rehearsals.

- :class:`SandboxServer` runs it (``python -m campaigns.sandbox`` from a shell);
- :class:`SandboxControl` steers its faults over HTTP;
- :class:`SandboxRecord` reads the messages it accepted, from any process.
"""

from campaigns.sandbox.control import SandboxControl
from campaigns.sandbox.record import Duplicate, RecordedMessage, SandboxRecord
from campaigns.sandbox.server import SandboxServer, main

__all__ = ["Duplicate", "RecordedMessage", "SandboxControl", "SandboxRecord", "SandboxServer",
           "main"]
