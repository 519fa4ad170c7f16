"""The run folder contract: weights in safetensors plus the run card (model.json), enough to rebuild the model alone.

Later stages (evaluate, distill, export, serve) load models through `load_model` and nothing else.
"""

from __future__ import annotations

from pathlib import Path

from safetensors.torch import load_file, save_file
from torch import nn

from medkd.files import BEST, staged
from medkd.models.card import RunCard
from medkd.models.registry import create_model


def save_model(folder: Path, model: nn.Module, card: RunCard, filename: str = BEST) -> None:
    """Write `model`'s weights as `filename` and its run card (architecture, classes, preprocessing, ...).

    Parameters
    ----------
    folder : Path
        The run folder; made when missing.
    model : nn.Module
        Its state dict is written in safetensors, every tensor detached, contiguous and on the CPU.
    card : RunCard
        Written as the folder's model.json.
    filename : str, default BEST ("model.safetensors")
        The weights file's name in `folder` (LAST: the last epoch's).
    """
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    with staged(folder / filename) as staging:
        save_file(state, staging)
    card.write(folder)


def load_model(folder: str | Path, filename: str = BEST) -> tuple[nn.Module, RunCard]:
    """Rebuild the model of a run folder from its card and weights; returns (model in eval mode, card).

    Parameters
    ----------
    folder : str or Path
        A finished run folder: its card (model.json) and weights.
    filename : str, default BEST ("model.safetensors")
        Which weights file of the folder to load.

    Returns
    -------
    model : nn.Module
        In eval mode, on the CPU: float inputs (N, card.in_chans, H, W), normalised as card.normalisation says,
        to logits (N, len(card.classes)).
    card : RunCard

    Raises
    ------
    CardError
        A ModelError: the folder has no card, or one this medkd cannot read.
    ModelError
        When the card's architecture cannot be built.
    """
    folder = Path(folder)
    card = RunCard.read(folder)
    model = create_model(card.architecture, num_classes=len(card.classes), in_chans=card.in_chans, **card.model_args)
    model.load_state_dict(load_file(folder / filename))
    return model.eval(), card
