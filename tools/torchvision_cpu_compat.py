"""Lets torchvision's Python API import on a CPU-only torch when its C++ extension cannot load.

PyPI's Linux torchvision wheels are CUDA builds: on the CPU torch of this venv their ``_C``
extension fails to load, which torchvision tolerates everywhere except in
``_meta_registrations``, where ``torchvision::nms`` and ``torchvision::qnms`` are registered
unconditionally and the import raises (and with it every package that imports torchvision when
it is installed, such as transformers). Installed by ``tools/setup_lerobot.sh`` as a ``.pth``
hook, this finder runs once, right before torchvision is first imported: if the extension does
not load it declares those two operator schemas without kernels, so the import succeeds and a
call to them still fails loudly. With a working extension it changes nothing.
"""

import importlib.abc
import importlib.util
import os
import sys

_LIBRARY = None  # keeps the schema definitions alive for the life of the process


class _TorchvisionOpsFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name != "torchvision":
            return None
        sys.meta_path.remove(self)  # one check per process; the normal finders do the import
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.submodule_search_locations:
            _declare_missing_ops(list(spec.submodule_search_locations)[0])
        return spec


def _declare_missing_ops(package_dir: str) -> None:
    global _LIBRARY
    import torch

    try:
        torch.ops.load_library(os.path.join(package_dir, "_C.so"))
        return
    except (OSError, ImportError):
        pass
    lib = torch.library.Library("torchvision", "FRAGMENT")
    for op in ("nms", "qnms"):
        try:
            getattr(torch.ops.torchvision, op)
        except (AttributeError, RuntimeError):
            lib.define(f"{op}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    _LIBRARY = lib


if "torchvision" not in sys.modules:
    sys.meta_path.insert(0, _TorchvisionOpsFinder())
