"""The lab: what runs on top of the optimizer (loaded only when used).

Data flows one way: adversary / task -> cell (the optimizer transform's own
``update``) -> running sums -> engine (vmap, shard, chunk, resume) -> table
-> report -> CLI.  ``README.md`` in this folder describes each place and one
run of ``ftrl-adam regret`` hop by hop; ``import ftrl_adam`` loads none of
this (tests/test_layering.py).
"""
