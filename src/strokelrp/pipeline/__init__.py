"""Orchestration: what the command line and the demo call.

Each function here loads (a trained run, the cases), computes (explain, attribute, assess),
and writes through the pure functions of :mod:`strokelrp.analysis` and :mod:`strokelrp.report`
(which take arrays and tables, never a run folder): :mod:`.explain` (one case) and
:mod:`.sweep` (every case x setting, resumable, ``torchrun``); :mod:`.report` reads a
run's files for the HTML report; :mod:`.demo` runs every stage on synthetic data.
"""
