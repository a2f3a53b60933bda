"""``python -m strokelrp`` (also what ``torchrun -m strokelrp`` runs)."""

from strokelrp.cli import main

main()
