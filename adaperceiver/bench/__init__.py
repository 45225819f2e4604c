"""Benchmarks at the published size (docs/performance.md).

``python -m adaperceiver.bench`` (``cli``: ours against the peer, the GEMM floor, widths and
exits, optionally compiled), ``python -m adaperceiver.bench.anytime`` (the anytime grid) and
``python -m adaperceiver.bench.onnx`` (ONNX Runtime against PyTorch). ``published`` builds the
size and its random weights, ``timing`` times interleaved rounds, ``peer`` is the yardstick
model written the usual timm-ViT way. These modules are tools, not a stable API.
"""
