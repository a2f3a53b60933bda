"""Trust measures that run a network (above ``analysis/``, which takes arrays): the modality
ablation (``ablation``)."""
