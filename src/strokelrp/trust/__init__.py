"""Trust measures that run a network (above ``analysis/``, which takes arrays): the
assessment of a case (``assess``), perturbation curves (``perturbation``) and the modality
ablation (``ablation``). Pure measures of arrays live in :mod:`strokelrp.analysis`."""
