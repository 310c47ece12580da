"""Running a model and reading it through a lens: one forward pass kept for the lens and read as traces (`trace`,
`records`, `backends`, `reduce`, `intrace`), the logit-lens grid, the model's own continuation, attention, patching,
and `lens check` (`check`). A read that runs otherwise on NDIF is a generic function `lens.remote` adds to."""
