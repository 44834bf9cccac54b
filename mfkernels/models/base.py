"""The shared model API and configuration (every model in mfkernels.models follows it).

A model is an nn.Module with
    log_prob(x)                 log density of x (on the learned manifold for manifold models)
    sample(n, temperature=1.0)  n samples; temperature scales the latent noise's standard deviation
    encode(x) / decode(u)       to and from manifold coordinates u (standard normal under the model)
    project(x)                  decode(encode(x)): the nearest point of the learned manifold
    loss(x)                     (scalar to minimise, dict of the named terms, detached)
and a `config` (a dataclass, `ModelConfig` subclass) from which `build_model(name, config)` rebuilds
it, so a checkpoint (name, config, state_dict) is self-contained.
"""

from __future__ import annotations

import abc
import contextlib
import dataclasses
import functools
from typing import Any, ClassVar

import torch
from torch import Tensor, nn


@contextlib.contextmanager
def seeded(seed: int):
    """Parameters created inside are initialised from `seed`; the global RNG is left as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


@dataclasses.dataclass
class ModelConfig:
    """Architecture shared by the flow models: `features` is the data dimension D, `manifold_dim` d.

    The outer flow has `num_layers` RQ spline couplings (each followed by an LU linear map) with
    `num_bins` bins on [-tail_bound, tail_bound] and MLP conditioners of `hidden_features` units; the
    flow on the manifold coordinates has `inner_layers` layers (0: none). `seed` fixes the initialisation.
    `backbone="glow"` makes the outer flow a multi-scale Glow flow on images of `image_shape` (C, H, W)
    instead (`flows.MultiScaleFlow`: `levels` levels of `num_layers` steps, conditioners of
    `hidden_features` channels); data stay flat vectors of C·H·W features. `backbone="realnvp"`: affine
    couplings + LU maps (`flows.realnvp_flow`) in place of the spline couplings.
    """

    features: int = 2
    manifold_dim: int = 1
    num_layers: int = 5
    inner_layers: int = 3
    num_bins: int = 8
    tail_bound: float = 5.0
    inner_tail_bound: float = 4.0
    hidden_features: int = 64
    seed: int = 0
    backbone: str = "spline"
    image_shape: list[int] | None = None
    levels: int = 2

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def check_option_names(cls, values: dict[str, Any], owner: str | None = None) -> None:
        """Every key of `values` names a field, or a ValueError listing the unknown and the known ones."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ValueError(f"{owner or cls.__name__}: unknown option(s) {unknown}; expected some of {sorted(names)}")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "ModelConfig":
        cls.check_option_names(values)
        return cls(**values)

    def check_types(self) -> None:
        """Each option's value against its annotation (int, float, str, bool, list, optional): a
        string where a number belongs (`--set hidden_features=abc`) is a clear error, not a crash deep
        inside a layer's constructor."""
        kinds = {"int": (int,), "float": (int, float), "str": (str,), "bool": (bool,), "list": (list, tuple)}
        for f in dataclasses.fields(self):
            annotation = str(f.type).replace(" ", "")
            parts = annotation.split("|")
            value = getattr(self, f.name)
            if value is None and "None" in parts:
                continue
            allowed = tuple(t for part in parts for key, ts in kinds.items() if part.split("[")[0] == key for t in ts)
            if not allowed:
                continue
            wrong_bool = isinstance(value, bool) and bool not in allowed
            if wrong_bool or not isinstance(value, allowed):
                raise ValueError(f"{type(self).__name__}: option {f.name!r} must be {f.type}, got {value!r}")

    def check_choice(self, field: str, choices: tuple[str, ...]) -> None:
        value = getattr(self, field)
        if value not in choices:
            raise ValueError(f"{type(self).__name__}: {field!r} must be one of {list(choices)}, got {value!r}")

    def build_flow(self, inner: bool = False) -> nn.Module:
        """The outer flow on R^D (or, inner=True, the flow on the manifold coordinates), initialised
        from `seed` without touching the global RNG."""
        from ..flows import MultiScaleFlow, Sequential, realnvp_flow, rq_spline_flow

        features, layers, bound = ((self.manifold_dim, self.inner_layers, self.inner_tail_bound) if inner
                                   else (self.features, self.num_layers, self.tail_bound))
        seed = self.seed + (1000 if inner else 0)
        if layers == 0:
            return Sequential()  # the identity: e.g. PR-D's single block, u with a standard normal prior
        with seeded(seed):
            if self.backbone == "glow" and not inner:
                return MultiScaleFlow(tuple(self.image_shape), self.levels, layers, self.hidden_features, seed=seed)
            if self.backbone == "realnvp" and features >= 2:
                return realnvp_flow(features, layers, self.hidden_features, seed=seed)
            return rq_spline_flow(features, layers, self.num_bins, bound, self.hidden_features, seed=seed)

    def validate(self) -> None:
        if not 1 <= self.manifold_dim <= self.features:
            raise ValueError(f"{type(self).__name__}: need 1 <= manifold_dim <= features, got manifold_dim="
                             f"{self.manifold_dim}, features={self.features}")
        self.check_backbone()

    def check_backbone(self, choices: tuple[str, ...] = ("spline", "glow", "realnvp")) -> None:
        self.check_choice("backbone", choices)
        if self.backbone == "glow" and (
            self.image_shape is None
            or len(self.image_shape) != 3
            or self.image_shape[0] * self.image_shape[1] * self.image_shape[2] != self.features
        ):
            raise ValueError(f"{type(self).__name__}: backbone='glow' needs image_shape = [C, H, W] with C*H*W = "
                             f"features = {self.features}, got image_shape={self.image_shape}")


def _refusing_empty_batches(loss):
    @functools.wraps(loss)
    def checked(self, x, *args, **kwargs):
        if isinstance(x, Tensor) and x.dim() >= 1 and x.shape[0] == 0:
            raise ValueError(f"{type(self).__name__}.loss: the batch is empty (shape {tuple(x.shape)}); "
                             f"a mean over no points has no value")
        return loss(self, x, *args, **kwargs)

    return checked


class Model(nn.Module, metaclass=abc.ABCMeta):
    """Base class of the models: holds the config and gives project() and the training hook."""

    config_class: ClassVar[type[ModelConfig]] = ModelConfig
    name: ClassVar[str]

    def __init__(self, config: ModelConfig | None = None, **options):
        super().__init__()
        self.config_class.check_option_names(options, owner=type(self).__name__)
        if config is None:
            config = self.config_class(**options)
        elif options:
            config = dataclasses.replace(config, **options)
        if not isinstance(config, self.config_class):
            raise TypeError(f"{type(self).__name__}: 'config' must be a {self.config_class.__name__}, "
                            f"got {type(config).__name__}")
        config.check_types()
        config.validate()
        self.config = config

    def _check_input(self, x: Tensor) -> None:
        if not isinstance(x, Tensor) or x.dim() != 2 or x.shape[1] != self.config.features:
            shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"{type(self).__name__}: expected x of shape (B, {self.config.features}), got {shape}")
        p = next(self.parameters(), None)
        if p is not None and (x.dtype != p.dtype or x.device != p.device):
            raise ValueError(f"{type(self).__name__}: x is {x.dtype} on {x.device} but the model is {p.dtype} on "
                             f"{p.device}; convert one of them (x.to(model's dtype/device) or model.to(x.dtype))")

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "loss" in cls.__dict__:  # every model's loss refuses an empty batch (its mean would be NaN)
            cls.loss = _refusing_empty_batches(cls.__dict__["loss"])

    def _check_latent(self, u: Tensor, width: int | None = None) -> None:
        """decode's input: (B, latent_dim) (or (B, width) where a model allows another width)."""
        width = self.latent_dim if width is None else width
        if not isinstance(u, Tensor) or u.dim() != 2 or u.shape[1] != width:
            shape = tuple(u.shape) if isinstance(u, Tensor) else type(u).__name__
            raise ValueError(f"{type(self).__name__}.decode: expected latent coordinates of shape (B, {width}), "
                             f"got {shape}")

    def _param(self) -> Tensor:
        return next(self.parameters())

    @abc.abstractmethod
    def log_prob(self, x: Tensor) -> Tensor: ...

    @abc.abstractmethod
    def encode(self, x: Tensor) -> Tensor: ...

    @abc.abstractmethod
    def decode(self, u: Tensor) -> Tensor: ...

    @abc.abstractmethod
    def loss(self, x: Tensor) -> tuple[Tensor, dict[str, Tensor]]: ...

    @property
    def latent_dim(self) -> int:
        return self.config.manifold_dim

    def project(self, x: Tensor) -> Tensor:
        return self.decode(self.encode(x))

    @torch.no_grad()
    def sample(self, n: int, temperature: float = 1.0, generator: torch.Generator | None = None) -> Tensor:
        p = self._param()
        u = torch.randn(n, self.latent_dim, generator=generator, dtype=p.dtype, device="cpu").to(p.device)
        return self.decode(u * temperature)

    def begin_step(self, step: int) -> None:
        """Called by the training loop before each step (M-flow switches phases here)."""

    def forward(self, x: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """The training loss: DistributedDataParallel wraps forward, so forward is loss."""
        return self.loss(x)
