"""Test-wide settings for every collected file (tests, doctests, README).

One torch thread: on a 2-core machine with other processes busy, two intra-op threads ran
small steps up to 20x slower than one.
"""

import torch

torch.set_num_threads(1)
