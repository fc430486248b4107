"""mlpipe core library: definitions, planning, fingerprints, storage, compute.

Never imports azure.functions or azure.durable_functions (tests/unit/test_layering.py).
"""

__version__ = "0.1.0"
