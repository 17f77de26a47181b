"""What the SSM mixers share: initialisations, the recurrent state, the FFT long convolution, one step.

These modules import nothing of the project except the kernels' dispatch point, so every import goes
one way: mixers (:mod:`mambabench.models.mixers`) -> these shared pieces -> kernels / reference ops.
"""

from mambabench.models.ssm.cache import SSMCache
from mambabench.models.ssm.fft_conv import fft_causal_conv
from mambabench.models.ssm.initialization import A_INITS, init_a_matrix, inverse_softplus_dt_bias
from mambabench.models.ssm.step import ssm_step

__all__ = ["A_INITS", "SSMCache", "fft_causal_conv", "init_a_matrix", "inverse_softplus_dt_bias", "ssm_step"]
