"""``python -m adaperceiver.export_onnx``: deprecated; runs ``adaperceiver.onnx.export``."""

from ..onnx.export import main

if __name__ == "__main__":
    raise SystemExit(main())
