"""The reproduction report: the paper beside this run, per class, calibration, failures."""
