"""Data: the ISLES 2017 reader, synthetic cases, preprocessing, the torch Dataset."""
