"""Put on PYTHONPATH by the probe for its subprocesses: no network beyond the loopback."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import _netguard

_netguard.install()
