"""Shared primitives below every layer: Dice and the segmentation metrics (``metrics``), the
brain and lesion masks (``masks``), volume resizing (``volumes``) and reorientation
(``orientation``). They import nothing of strokelrp but ``config`` and ``errors``, so
``data/``, ``train/``, ``analysis/`` and ``report/`` can all use them."""
