"""The reproduction report: the paper's tables beside this run's, per class, calibration, failures."""
