import os
import sys

# Helpers shared by tests (reference implementations) import as top-level modules.
sys.path.insert(0, os.path.dirname(__file__))
