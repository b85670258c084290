"""The standalone device runner: `device_runner.py` needs only numpy and a runtime."""
