"""Optional parts of the installation a site config may ask for.

The core (validate, run, every command without cameras) imports nothing from the vision extra. A site
with ``cameras:`` on an installation without it gets one config error that names the extra, instead of
a ModuleNotFoundError from deep inside the daemon at start.
"""

from __future__ import annotations

import importlib.util

# Import name -> the distribution in the vision extra that provides it (pyproject.toml). onnx itself is
# only needed to build models (models/build_baseline.py), not to run them.
VISION_MODULES = {"numpy": "numpy", "cv2": "opencv-python-headless", "onnxruntime": "onnxruntime"}


def missing_vision_modules() -> list[str]:
    """Distributions of the vision extra that this Python cannot import (found, not imported: cheap)."""
    return [dist for module, dist in VISION_MODULES.items() if importlib.util.find_spec(module) is None]


def vision_extra_problem() -> str | None:
    """Why cameras cannot run on this installation, or None when they can."""
    missing = missing_vision_modules()
    if not missing:
        return None
    return (f"need the vision extra (numpy, OpenCV, ONNX Runtime), not installed here (missing: {', '.join(missing)}): "
            "pip install 'fieldgate[vision]' (the fieldgate .deb ships it)")
