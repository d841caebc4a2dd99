"""NIR: the conventions and neuron mapping (`conventions`), the file (`file`), producers (`from_torch`,
`deploy`), consumers (`to_torch`, `translate` for other tools' files, `consumers` for other tools' readers)."""
