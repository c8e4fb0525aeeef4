"""PyInstaller runtime hook of the CPU-only build (AUDIOSAE_FREEZE_CUDA=0 in the spec).

That build leaves out the CUDA libraries torch loads only for GPU kernels, so a GPU that
torch could see would fail on the first convolution: hide every GPU before torch starts.
"""

import os

os.environ["CUDA_VISIBLE_DEVICES"] = ""
