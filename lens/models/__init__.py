"""What a model is to the lens and how it loads: the `Model` protocol and `LoadedModel` (`model`), the named models
and how any other name is understood (`registry`, `fetch`, `gguf`), loading into a TransformerBridge (`loader`,
`device`), how it runs here (`bridge`), the checks that it reads right (`exact` on load, `spot` through a run), and
the notes' architectures with random weights (`simulate`). Below the lenses and the reads: it imports neither."""
