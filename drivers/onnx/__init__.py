"""ONNX Runtime inference backend (the detector worker loads it by name; see gateway/vision/backend.py)."""
