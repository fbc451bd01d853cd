"""nimrunbook: get NVIDIA NIM LLM services running in an air-gapped cluster with DataRobot."""

__version__ = "0.1.0"
