"""External model families (nnU-Net, ...): one package per family."""
