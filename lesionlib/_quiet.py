"""Silence known, harmless deprecation noise that fastai triggers on import (not ours to fix)."""
import warnings

warnings.filterwarnings("ignore", message=r"`torch\.jit\.script` is deprecated", category=FutureWarning)
warnings.filterwarnings("ignore", message=r".*mode\.chained_assignment.*")
warnings.filterwarnings("ignore", message=r"pkg_resources is deprecated", category=UserWarning)
