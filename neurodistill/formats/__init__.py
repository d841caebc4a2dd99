"""File formats, one home each, reader and writer side by side: deploy_h5, netx, manifest, nir/."""
