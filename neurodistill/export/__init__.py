"""Export: capture a trained SNN, fold, map to Loihi 2, quantize, write netx/NIR/ONNX bundles."""
