"""The model-running trust measures: perturbation curves, randomisation, the assessment of a
case (:mod:`strokelrp.trust.assess`). Pure measures of arrays live in :mod:`strokelrp.analysis`."""
