"""dyncore: the package of *Dynamic Filters: from equations to kernels*.

Every operator exists in four backends (see :mod:`dyncore.backend`): plain Python ``"loops"``
(the executable specification), compiled ``"numba"`` CPU kernels, vectorized ``"torch"`` and
Numba ``"cuda"`` kernels (on a GPU, or under the Numba CUDA simulator when there is none).
"""

# The simulator must be chosen before anything imports Numba: keep this import first.
from . import _bootstrap  # noqa: I001  (order matters)

from .backend import BACKENDS, backends, resolve_backend
from . import utils
from . import conv
from . import ddf
from . import dfn
from . import dmnet
from . import lsdfn
from . import pad

__version__ = "0.1.0"

__all__ = ["BACKENDS", "backends", "resolve_backend", "utils", "conv", "ddf", "dfn", "dmnet", "lsdfn", "pad", "__version__"]
