"""Quantization-aware training to Loihi 2 fixed point (`train --deploy loihi2`).

`plan` maps the deployment graph back to the model's modules, `forward` runs the model as the
exported network computes it (differentiable, straight-through where rounding is not: `values`
gives the integers, `synapse` and `neuron` the layers' forwards, `swap` puts them in place), and
`deploy` builds the quantized graph from the live weights and evaluates it with `run_fxp`.
"""
