"""Shared by every test folder: this file puts ``tests/`` on ``sys.path`` (pytest's prepend
import mode), so the helper modules here (``cli_helpers``) import from any test file."""
