"""Ways to read a residual vector as next-token logits: the lenses themselves (`lenses`: exact, raw, tuned,
Jacobian), the one registry of them (`registry`: how each is built, and what every layer lists), and the tuned and
Jacobian lenses' files, fitting, training corpus and published copies. Above the models, below the reads."""
