"""encoder_onnx package."""
