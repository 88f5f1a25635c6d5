"""Generative reward models served by the hub: the `genrm` and `grm` kinds.

config.py   JudgeConfig (pydantic only; a recipe's `rewards.judge:`)
engine.py   JudgeEngine, a Ray actor running vLLM's AsyncLLM
pool.py     start the engines in placement groups, spread requests, usage
kinds.py    the `genrm` and `grm` kinds: requests out, RewardResults back
parse.py    reading judge completions, with the reason when they cannot be read
aggregate.py voting, meta-RM selection, P(Yes)

Nothing here is imported by `import rewards.judge` itself, so the config
stays light.
"""
