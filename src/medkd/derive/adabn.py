"""AdaBN (Li et al., 2016, "Revisiting Batch Normalization For Practical Domain Adaptation"): every batch-norm
layer's statistics measured on a site's unlabelled images. Its temperature and threshold stay validation's:
re-fit them with `medkd calibrate` where the site has labels, since adaptation can move them."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from medkd.derive.base import DerivedRunMethod, DeriveSettings, register_derived_run


class AdaBNSettings(DeriveSettings):
    name: Literal["adabn"] = "adabn"
    batch_size: int = Field(64, ge=2, description="batch statistics are measured over batches of this size")


@register_derived_run("adabn")
class AdaBN(DerivedRunMethod):
    Settings = AdaBNSettings
    settings: AdaBNSettings
    needs_site_images = True

    def derive(self, source, inputs, out):
        from medkd.models import ModelError, load_model, reestimate_batchnorm

        model, card = load_model(source)
        assert inputs.site_images is not None  # derive_run checks needs_site_images
        layers = reestimate_batchnorm(model, inputs.site_images, card.normalisation,
                                      batch_size=self.settings.batch_size)
        if layers == 0:
            raise ModelError(f"{card.architecture} has no batch-norm layer: AdaBN has nothing to adapt")
        return model, card, {"layers": layers}
