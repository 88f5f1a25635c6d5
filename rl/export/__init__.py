"""Turn a run's learner checkpoint into files other tools load.

`rl.export.hf` writes a plain Hugging Face folder (`asymptote export hf`);
`rl.export.cli` registers the `export` verb group. Each format is one module
with one entry point, so a new format is one module and one sub-verb.
"""
