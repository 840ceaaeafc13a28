"""slimvision: small, fast neural image models for CPUs, browsers and embedded boards.

Importing the package is cheap: heavy modules (onnxruntime, onnx, torch) load only when a
pipeline or a training task is created.
"""

import os as _os
import sys as _sys

__version__ = "0.1.0"

# Nothing leaves the machine. ONNX Runtime's Linux and macOS wheels (1.32) carry Microsoft's 1DS
# telemetry: once a process loads onnxruntime it writes a device id and an event cache under
# ~/.cache/Microsoft/DeveloperTools/.onnxruntime and resolves its collector's host again and
# again (disable_telemetry_events() does not stop that). The only switch is read once, when the
# library loads, so it is set here, before any slimvision module can import onnxruntime.
# ORT_DISABLE_TELEMETRY is what 1.32 reads; ORT_TELEMETRY_DISABLED is the name later releases use.
for _switch in ("ORT_DISABLE_TELEMETRY", "ORT_TELEMETRY_DISABLED"):
    _os.environ[_switch] = "1"
#: True when the process had loaded onnxruntime before slimvision, too late for the switch.
ORT_LOADED_FIRST = "onnxruntime" in _sys.modules
