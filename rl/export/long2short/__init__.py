"""`asymptote export long2short`: make a long-thinking model short, the four
ways Kimi k1.5 (arXiv 2501.12599, §2.4) describes: model merging (merge.py),
shortest rejection sampling (rs.py), DPO (dpo.py) and long2short RL
(rl_recipe.py). export.py wires a method to its source (source.py), the one
engine that measures before and after (bench.py) and the model card (card.py).
"""
