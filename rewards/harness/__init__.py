"""The two processes of an assert-style code test (rewards.code_tests).

`program.py` runs the untrusted program in its sandbox and serves it over a
pipe; `verdict.py` runs the test in a second sandbox that never executes the
program's code and writes the verdicts; `wire.py` is the plain-data format
between them. Standard library only: the hub sends these files into the
sandboxes (as the package `harness`), and tests import them as
`rewards.harness.*`. Nothing is imported here.
"""
