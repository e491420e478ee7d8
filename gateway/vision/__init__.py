"""On-box fire and smoke detection: model manifests, output decoding, temporal confirmation, events.

Everything here is pure Python + numpy. The parts that call OpenCV or ONNX Runtime live in
``drivers/camera`` and ``drivers/onnx`` and are reached through small protocols, so this package
never imports a hardware or inference library (docs/architecture.md, docs/vision.md).
"""
