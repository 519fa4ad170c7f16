"""Knowledge distillation: any trained run (or an ensemble of runs) teaches any student from the model factory.

Public API: distill, sweep, Distillation (the fit() extension), DistillConfig, HintConfig, DistillationModule,
FrozenTeacher, load_teachers, LOGIT_LOSSES, register_logit_loss, ensemble_logits, DistillationError.
"""

import lazy_loader

# Submodules load on first use: `import medkd.distillation` costs nothing until a name is used
# (the public API and its types are in __init__.pyi).
__getattr__, __dir__, __all__ = lazy_loader.attach_stub(__name__, __file__)
