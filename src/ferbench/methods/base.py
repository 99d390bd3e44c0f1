"""The Method interface: what every training method implements and what the engine calls.

A method is an ``nn.Module`` holding ALL its networks (so ``state_dict()`` is its whole learned
state, and one checkpoint restores it). New methods subclass :class:`~ferbench.methods.supervised.Supervised`
(the baseline: backbone + linear head) and override only what differs, solo-learn style; a
method file sets ``name`` and is registered on import (no registry to edit).

Configuration
-------------
``params.yaml`` ``methods.<run name>`` is one block per *run name*; the run name may be a
variant (``triplet_m12_fc_only``). In that block:

* ``class``: the registered ``Method.name`` that implements it (default: the run name itself);
* the budget's training keys (``epochs``, ``lr`` ...) override the budget for the *train* stage;
* ``pretrain``: a mapping of training keys overriding the schedule of the *pretrain* stage;
* everything else is the method's hyperparameters: merged over the class's ``defaults`` (all
  classes of the MRO, most derived wins) into ``self.hp``; an unknown key is an error.

Lifecycle (one job = dataset x method x fold x seed x stage; the engine drives)
---------------------------------------------------------------------------
::

    cls = get_method(block.get("class", run_name))
    m = cls(settings, task)              # builds every network (seeded); no data yet
    m.setup(data, stage)                 # stage "pretrain" | "train"; data: FoldData (see data/folds.py)
    m.load_pretrained(state)             # train --pretrained only (from the pretrain's encoder.pt)
    m.to(device)                         # + the job's memory format; m.autocast is set
    m.steps_per_epoch, m.total_steps = m.num_batches(), epochs * m.num_batches()
    optimizers, schedulers = m.configure_optimizers()   # {name: optimiser}; schedulers step
                                                        # once per iteration
    for epoch:  batches = m.epoch_batches(generator, epoch)   # exactly m.num_batches() int64
                                         # [B, k] position arrays; default: shuffled
                                         # m.sampling_units(), drop_last, k = 1 (train) or
                                         # pretrain_views (pretrain)
        for positions in batches:        # the engine gathers images -> Batch (uint8, on device)
            batch.views = m.transform(batch, augmenter, train=True)   # k float views [B, C, S, S]
            automatic:  out = m.training_step(batch)      # or m.pretraining_step(batch)
                        engine: zero_grad all, out["loss"].backward(), step all optimizers
            manual:     out = m.training_step(batch, optimizers)  # the method steps itself
            engine: step every scheduler; m.on_step_end(step); log every other entry of ``out``
        m.on_epoch_end(epoch)
    eval: m.predict(x) -> logits [B, n_classes] (classification) or valence/arousal [B, 2]
          m.features(x) -> the features the head reads [B, D] (test embeddings)
    artefacts: m.extra_metrics() -> metrics.json "extra"; m.encoder_modules() -> encoder.pt

A batch carries ``k`` images per sample (``positions[:, j]``): 1 for supervised, 2 views of the
same frame for SimCLR/BYOL/MoCo, two frames of one clip for TimeAug, anchor/positive/negative
for triplets, (frame, its sequence's neutral frame) for GCNet. ``transform`` augments each
image independently by default; override it to share parameters between columns.

Optimisers: a method declares named parameter groups (``param_groups``: networks, a
learning-rate multiplier, the optimiser that steps them) and per-optimiser settings
(``optimizer_settings``: e.g. SGD for a head while the encoder uses the budget's Adam);
``configure_optimizers`` builds them all, one generic consumer for every method, and
``lr_schedulers`` adds per-iteration schedules. Each group's rate is logged as ``lr_<group>``.

Manual optimisation (CAF, AVCE: several networks, own optimisers, two passes per iteration):
set ``manual_optimization = True``; ``training_step(batch, optimizers)`` gets the optimisers by
name, does its own ``zero_grad``/``backward``/``step`` and returns only what to log (no
``loss`` entry needed: every returned value is logged by its name, and a non-finite one stops
the job). Wrap forward passes in ``with self.autocast():`` (bf16 where the job's precision is) and
call backward outside it. Schedulers are still stepped by the engine, once per iteration.

Pretraining: ``pretrain = True`` adds the stage (``pretraining_step``; ``epoch_batches`` and
``num_batches`` see ``self.stage == "pretrain"``; ``pretrain_views``; ``pretrain_augment``);
``pretrain_source(settings)`` / ``pretrain_data_depends_on_fold(settings)`` (classmethods, default:
the target dataset / ``pretrain_per_fold``) tell the job planner (:mod:`ferbench.plan`) which data
and whether one job per fold; ``pretrain_identity(settings)`` which runs share one pretraining;
``encoder_inputs(settings)`` which other runs' encoders the pretraining reads (default none);
``train_only_hparams`` are left out of the pretraining job's config. ``train`` then needs
``--pretrained encoder.pt`` and calls ``load_pretrained``.

Anything stateful that is not a parameter or buffer (a Python counter) goes through
``get_extra_state``/``set_extra_state`` so checkpoints restore it. Randomness in a method must
use ``torch`` (global RNG: restored on resume) or the generator passed to ``epoch_batches``.
"""

from __future__ import annotations

import abc
import contextlib
import dataclasses
from typing import Any, Callable, ClassVar, ContextManager, Mapping

import numpy as np
import torch
from torch import nn

from ferbench.data.augment import Augmenter, AugmentConfig
from ferbench.errors import FerbenchError

_REGISTRY: dict[str, type["Method"]] = {}


@dataclasses.dataclass(frozen=True)
class TaskInfo:
    """What the networks' shapes depend on."""

    task: str                  # "classification" | "va"
    classes: tuple[str, ...]   # empty for va
    image_size: int

    @property
    def num_outputs(self) -> int:
        return 2 if self.task == "va" else len(self.classes)


#: optimiser names ``make_optimizer`` knows
OPTIMIZERS = ("adam", "adamw", "sgd", "nesterov")
#: learning-rate policies the default ``lr_schedulers`` knows
LR_SCHEDULES = ("constant", "cosine", "onecycle")


@dataclasses.dataclass
class ParamGroup:
    """A named set of networks (or single parameters) trained by one optimiser at a learning
    rate of the optimiser's lr x ``lr_mult``. The name is logged (``lr_<name>``)."""

    name: str
    members: list[nn.Module | nn.Parameter]
    lr_mult: float = 1.0
    optimizer: str = "main"

    def parameters(self) -> list[nn.Parameter]:
        out: list[nn.Parameter] = []
        for member in self.members:
            out.extend([member] if isinstance(member, nn.Parameter) else member.parameters())
        return out


@dataclasses.dataclass
class Batch:
    positions: np.ndarray                 # int64 [B, k] folds positions
    images: torch.Tensor                  # uint8 [B, k, C, S, S] on the device, as cached
    labels: torch.Tensor                  # int64 [B] class of column 0 (-1: none)
    va: torch.Tensor                      # float32 [B, 2] valence/arousal of column 0
    views: list[torch.Tensor] = dataclasses.field(default_factory=list)  # k float [B, C', S, S]

    @property
    def x(self) -> torch.Tensor:
        """The first view: the input of single-image methods."""
        return self.views[0]

    def __len__(self) -> int:
        return int(self.positions.shape[0])


@dataclasses.dataclass(frozen=True)
class GpuCheck:
    """The one short job ``benchmarks/gpu_check.py`` runs on CUDA for a method class."""

    run: str       # a run name of params.yaml whose class this is
    stage: str     # "pretrain" | "train": the stage whose step is the class's own
    dataset: str   # train: a dataset the run trains on; pretrain: the data it pretrains on


@dataclasses.dataclass(frozen=True)
class RecipeRow:
    """One setting of a paper's recipe that the ``paper`` budget must resolve to
    (tests/test_paper_recipes.py). ``key``: a training key, ``channels``, a hyperparameter or
    ``aug.<field>`` of the effective augmentation. ``paper``: the paper's value where the
    benchmark deviates (None: the same); a deviation needs the README phrase ``readme``.
    ``runs``: run-name patterns (fnmatch, space-separated) it applies to; empty: every run whose
    class is, or derives from, the class declaring the row."""

    stage: str
    key: str
    value: Any
    paper: Any = None
    source: str = ""
    readme: str = ""
    runs: str = ""


class Method(nn.Module, metaclass=abc.ABCMeta):
    #: registry key; set in each concrete class (subclasses without their own ``name`` are not
    #: registered, so helper base classes stay out of the registry)
    name: ClassVar[str] = ""
    #: has a pretraining stage (``ferbench pretrain``); ``train`` then needs ``--pretrained``
    pretrain: ClassVar[bool] = False
    #: the pretraining data depend on the fold (training-fold subjects only); if False one
    #: pretraining job (on all subjects of its dataset) serves every fold
    pretrain_per_fold: ClassVar[bool] = True
    #: the tasks its networks and losses are for ("classification", "va")
    tasks: ClassVar[tuple[str, ...]] = ("classification", "va")
    #: the method steps its own optimisers in ``training_step(batch, optimizers)``
    manual_optimization: ClassVar[bool] = False
    #: images per sample in the pretraining batches made by the default sampler
    pretrain_views: ClassVar[int] = 1
    #: hyperparameters and their defaults (merged along the MRO)
    defaults: ClassVar[dict[str, Any]] = {
        "channels": 3,   # input channels the networks take (1: grey, converted on the device)
        "augment": {},   # AugmentConfig overrides (see data/augment.py), both stages
        "pretrain_augment": {},  # further overrides for the pretraining stage (SSL: strong)
    }
    #: declared types of hyperparameters whose default does not say it (a null default):
    #: key -> the accepted types, ``type(None)`` for null (merged along the MRO like defaults)
    hparam_types: ClassVar[dict[str, tuple[type, ...]]] = {}
    #: options for metrics.va_metrics in legacy mode (e.g. {"sagr_variant": "caf"})
    legacy_metric_options: ClassVar[dict[str, Any]] = {}
    #: hyperparameters that only affect the train stage: the workflow leaves them out of the
    #: pretraining job's config, so changing them does not rerun the pretraining
    train_only_hparams: ClassVar[tuple[str, ...]] = ()
    # What the rest of the project reads about a class, declared in its own file (each read
    # from the class's own __dict__ by :func:`declared`, never inherited):
    #: the GPU check's job (:class:`GpuCheck`), or the name of the class whose check covers
    #: this one (the same step, e.g. BYOL's and MoCo's are SimCLR's)
    gpu_check: ClassVar["GpuCheck | str | None"] = None
    #: the paper's recipe under the ``paper`` budget (:class:`RecipeRow`)
    paper_recipe: ClassVar[tuple["RecipeRow", ...]] = ()
    #: {paper row key: run names} of the published tables (``report/published.py``, keys
    #: ``<paper key>/<row label>``) whose "ours" cells these runs fill; when several are named,
    #: the first with runs supplies the numbers
    published_rows: ClassVar[Mapping[str, tuple[str, ...]]] = {}

    @classmethod
    def pretrain_source(cls, settings: Mapping[str, Any]) -> str:
        """The dataset the pretraining stage reads, for settings naming the target dataset."""
        return str(settings["dataset"])

    @classmethod
    def pretrain_data_depends_on_fold(cls, settings: Mapping[str, Any]) -> bool:
        """Whether the pretraining data depend on the fold (training-fold subjects only); when
        False the engine pretrains on every subject and one job serves all folds."""
        return cls.pretrain_per_fold and cls.pretrain_source(settings) == settings["dataset"]

    @classmethod
    def pretrain_identity(cls, settings: Mapping[str, Any]) -> dict[str, Any]:
        """What the pretraining result depends on, for pretrain-stage settings: runs with equal
        identities (variants differing only in ``train_only_hparams``) share one pretraining."""
        hp = cls.all_defaults()
        hp.update({k: v for k, v in (settings.get("method") or {}).items() if k not in ("class", "pretrain")})
        return {"class": cls.name, "dataset": cls.pretrain_source(settings),
                "hp": {k: v for k, v in sorted(hp.items()) if k not in cls.train_only_hparams},
                "schedule": dict(settings.get("train") or {})}

    @classmethod
    def encoder_inputs(cls, settings: Mapping[str, Any]) -> dict[str, str]:
        """{hyperparameter: run name} of the other runs whose pretrained encoder this method's
        pretraining reads, for pretrain-stage settings (default: none). The workflow makes that
        run's pretraining on the same data and fold an input of this one and hands the job its
        encoder.pt path in that hyperparameter (MaskFN's ``mask_fn_encoder``)."""
        return {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "name" in cls.__dict__ and cls.name:
            other = _REGISTRY.get(cls.name)
            if other is not None and other.__qualname__ != cls.__qualname__:
                raise TypeError(f"method name {cls.name!r} registered twice ({other} and {cls})")
            _REGISTRY[cls.name] = cls

    def __init__(self, settings: Mapping[str, Any], task: TaskInfo) -> None:
        super().__init__()
        self.settings = settings
        self.task = task
        self.run_name = settings.get("method_name", self.name)
        self.hp = self.merge_hparams(settings.get("method", {}))
        if task.task not in self.tasks:
            raise FerbenchError(f"methods.{self.run_name}: method class {self.name!r} is for "
                                f"{' and '.join(self.tasks)} tasks, not {task.task!r}")
        self.schedule: dict[str, Any] = dict(settings.get("train", {}))
        self.stage = "train"
        self.data: Any = None
        self.total_steps = 0
        self.steps_per_epoch = 0
        self.autocast: Callable[[], ContextManager] = contextlib.nullcontext

    # -- configuration ---------------------------------------------------------------------
    @classmethod
    def all_defaults(cls) -> dict[str, Any]:
        merged: dict[str, Any] = {}
        for klass in reversed(cls.__mro__):
            merged.update(getattr(klass, "__dict__", {}).get("defaults", {}))
        return merged

    @classmethod
    def hparam_type_problem(cls, key: str, value: Any) -> str | None:
        """Why ``value`` is not of hyperparameter ``key``'s declared type (the type of its
        default, or ``hparam_types``), or None. A boolean takes only true/false (never the
        string "false", which bool() would read as true); an integer takes no float or bool; a
        float takes an integer too."""
        declared: dict[str, tuple[type, ...]] = {}
        for klass in reversed(cls.__mro__):
            declared.update(getattr(klass, "__dict__", {}).get("hparam_types", {}))
        default = cls.all_defaults().get(key)
        if key in declared:
            accepted = declared[key]
        elif default is None:
            return None  # no declared type: anything the method itself checks
        elif isinstance(default, bool):
            accepted = (bool,)
        elif isinstance(default, int):
            accepted = (int,)
        elif isinstance(default, float):
            accepted = (float, int)
        elif isinstance(default, (list, tuple)):
            accepted = (list, tuple)
        elif isinstance(default, Mapping):
            accepted = (dict,)
        else:
            accepted = (type(default),)
        if isinstance(value, bool) and bool not in accepted:
            ok = False
        else:
            ok = isinstance(value, accepted)
        if ok:
            return None
        names = {bool: "a boolean (true or false)", int: "an integer", float: "a number", str: "a string",
                 list: "a list", tuple: "a list", dict: "a mapping", type(None): "null"}
        shown = [t for t in accepted if not (t is int and float in accepted)]  # a number covers both
        want = " or ".join(dict.fromkeys(names.get(t, t.__name__) for t in shown))
        return f"{value!r} is {type(value).__name__}, expected {want}"

    def merge_hparams(self, given: Mapping[str, Any]) -> dict[str, Any]:
        defaults = self.all_defaults()
        given = {k: v for k, v in given.items() if k not in ("class", "pretrain")}
        unknown = sorted(set(given) - set(defaults))
        if unknown:
            raise FerbenchError(
                f"methods.{self.settings.get('method_name', self.name)}: unknown key {unknown[0]!r} "
                f"for method class {self.name!r} (known: {', '.join(sorted(defaults))})")
        for key, value in given.items():
            problem = self.hparam_type_problem(key, value)
            if problem:
                raise FerbenchError(f"methods.{self.run_name}.{key}: {problem}")
        hp = dict(defaults)
        hp.update(given)
        if hp["channels"] not in (1, 3):
            raise FerbenchError(f"methods.{self.run_name}.channels: must be 1 or 3, got {hp['channels']!r}")
        return hp

    @property
    def in_channels(self) -> int:
        return int(self.hp["channels"])

    @classmethod
    def augment_settings(cls, hp: Mapping[str, Any], schedule: Mapping[str, Any],
                         stage: str) -> dict[str, Any]:
        """The augmentation keys a stage sets: the class's ``augment`` where it has one (a
        paper's own pipeline, e.g. GCNet's: the budget's generic ``augmentation`` is left out
        whole, so none of its keys, e.g. ``standardize``, leaks in), else the budget's; then the
        config's ``augment``; ``pretrain_augment`` (class, then config) on top when
        pretraining. Also what ``ferbench settings`` prints, so both read one rule."""
        defaults = cls.all_defaults()
        generic = {} if defaults["augment"] else dict(schedule.get("augmentation") or {})
        # a user's block overrides single keys of the class's block, not the whole mapping
        given = {**generic, **defaults["augment"], **dict(hp.get("augment") or {})}
        if stage == "pretrain":
            given.update({**defaults["pretrain_augment"], **dict(hp.get("pretrain_augment") or {})})
        if schedule.get("backbone_weights") == "imagenet" and not {"mean", "std"} & set(given):
            # ImageNet weights expect their own input statistics, not the default [-1, 1] range
            from ferbench.models import imagenet_normalisation

            given["mean"], given["std"] = imagenet_normalisation(str(schedule["backbone"]))
        return given

    def augment_config(self) -> AugmentConfig:
        """Augmentation for the current stage (:meth:`augment_settings`)."""
        given = self.augment_settings(self.hp, self.schedule, self.stage)
        return AugmentConfig.from_settings(given, f"methods.{self.run_name}.augment")

    # -- data ------------------------------------------------------------------------------
    def setup(self, data: Any, stage: str) -> None:
        """Called once with the fold's data before training. Precompute sampler tables here."""
        if stage not in ("train", "pretrain"):
            raise ValueError(f"unknown stage {stage!r}")
        if stage == "pretrain" and not self.pretrain:
            raise FerbenchError(f"method {self.run_name!r} has no pretraining stage")
        self.data = data
        self.stage = stage

    def sampling_units(self) -> np.ndarray:
        """What one epoch samples: train positions (train stage) or every frame of the training
        subjects (pretrain stage)."""
        if self.stage == "train":
            return self.data.indices["train"]
        return np.flatnonzero(self.data.subject_mask)

    def batch_size(self) -> int:
        return int(self.schedule["batch_size"])

    def num_batches(self) -> int:
        """Batches per epoch; ``epoch_batches`` must return exactly this many."""
        n, bs = len(self.sampling_units()), self.batch_size()
        return max(1, n // bs)

    def epoch_batches(self, generator: torch.Generator, epoch: int) -> list[np.ndarray]:
        """One epoch of int64 [B, k] position arrays: a shuffled pass over ``sampling_units``,
        the last incomplete batch dropped (fixed batch sizes suit BN and contrastive losses);
        a set smaller than one batch is one batch. k = ``pretrain_views`` copies in pretraining."""
        units = self.sampling_units()
        if not len(units):
            raise FerbenchError(f"{self.run_name}: nothing to train on in stage {self.stage!r}")
        order = units[torch.randperm(len(units), generator=generator).numpy()]
        bs = min(self.batch_size(), len(units))
        nb = self.num_batches()
        k = self.pretrain_views if self.stage == "pretrain" else 1
        return [np.repeat(order[i * bs:(i + 1) * bs, None], k, axis=1) for i in range(nb)]

    def transform(self, batch: Batch, augmenter: Augmenter, train: bool) -> list[torch.Tensor]:
        """uint8 [B, k, C, S, S] -> k float views; each image gets its own random parameters."""
        b, k = batch.images.shape[:2]
        flat = augmenter(batch.images.flatten(0, 1), train=train)
        return list(flat.view(b, k, *flat.shape[1:]).unbind(1))

    # -- optimisation ----------------------------------------------------------------------
    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]

    def param_groups(self) -> list[ParamGroup]:
        """The named parameter groups and the optimiser each belongs to (solo-learn's
        ``learnable_params``). Default: every trainable parameter in one group ``all`` of one
        optimiser ``main``. Override to give networks their own learning-rate multipliers or
        their own optimisers (manual optimisation)."""
        return [ParamGroup("all", [self])]

    def optimizer_settings(self) -> dict[str, dict[str, Any]]:
        """Per optimiser name, what differs from the stage's schedule (``optimizer``, ``lr``,
        ``weight_decay`` and the optimiser's own keyword arguments, e.g. ``betas``)."""
        return {}

    def lr_schedulers(self, optimizers: Mapping[str, torch.optim.Optimizer]) -> list[Any]:
        """Per-iteration learning-rate schedulers over the built optimisers, from the stage's
        ``lr_schedule``: ``constant`` (none), ``cosine`` (each group's rate decays to 0 over the
        run) or ``onecycle`` (warm-up over the first 30% to each group's rate, then cosine
        annealing to a thousandth of it: torch's OneCycleLR)."""
        policy = self.schedule.get("lr_schedule", "constant")
        total = max(1, int(self.total_steps))
        if policy == "constant":
            return []
        if policy == "cosine":
            return [torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total) for opt in optimizers.values()]
        if policy == "onecycle":
            return [torch.optim.lr_scheduler.OneCycleLR(
                opt, max_lr=[g["lr"] for g in opt.param_groups], total_steps=total, pct_start=0.3,
                div_factor=25.0, final_div_factor=40.0, cycle_momentum=False)
                for opt in optimizers.values()]
        raise FerbenchError(f"lr_schedule: unknown policy {policy!r} (known: {', '.join(LR_SCHEDULES)})")

    def make_optimizer(self, params: Any, optimizer: str | None = None, lr: float | None = None,
                       weight_decay: float | None = None, **kwargs: Any) -> torch.optim.Optimizer:
        """An optimiser from the stage's schedule (``optimizer``, ``lr``, ``weight_decay``)."""
        name = (optimizer or self.schedule.get("optimizer", "adam")).lower()
        lr = float(self.schedule["lr"] if lr is None else lr)
        wd = float(self.schedule.get("weight_decay", 0.0) if weight_decay is None else weight_decay)
        if name == "adam":
            return torch.optim.Adam(params, lr=lr, weight_decay=wd, **kwargs)
        if name == "adamw":
            return torch.optim.AdamW(params, lr=lr, weight_decay=wd, **kwargs)
        if name in ("sgd", "nesterov"):
            kwargs.setdefault("momentum", 0.9)
            return torch.optim.SGD(params, lr=lr, weight_decay=wd, nesterov=name == "nesterov", **kwargs)
        raise FerbenchError(f"optimizer: unknown name {name!r} (known: {', '.join(OPTIMIZERS)})")

    def configure_optimizers(self) -> tuple[dict[str, torch.optim.Optimizer], list[Any]]:
        """The one generic consumer of ``param_groups``: one optimiser per optimiser name (in
        order of first appearance), each torch param group named after its ParamGroup and at
        lr x ``lr_mult``. Frozen parameters are left out; a trainable parameter in two groups, or
        in none, is an error (it would train twice, or silently not at all)."""
        groups = self.param_groups()
        owner: dict[int, str] = {}
        by_optimizer: dict[str, list[dict[str, Any]]] = {}
        for group in groups:
            params = [p for p in group.parameters() if p.requires_grad]
            for p in params:
                if id(p) in owner:
                    raise FerbenchError(f"methods.{self.run_name}: a parameter is in groups "
                                        f"{owner[id(p)]!r} and {group.name!r}")
                owner[id(p)] = group.name
            if params:
                by_optimizer.setdefault(group.optimizer, []).append(
                    {"name": group.name, "params": params, "lr_mult": float(group.lr_mult)})
        orphans = [n for n, p in self.named_parameters() if p.requires_grad and id(p) not in owner]
        if orphans:
            raise FerbenchError(f"methods.{self.run_name}: trainable parameter {orphans[0]!r} is in no "
                                f"parameter group")
        settings = self.optimizer_settings()
        optimizers: dict[str, torch.optim.Optimizer] = {}
        for name, torch_groups in by_optimizer.items():
            kwargs = dict(settings.get(name, {}))
            base_lr = float(kwargs.get("lr", self.schedule["lr"]))
            for g in torch_groups:
                g["lr"] = base_lr * g.pop("lr_mult")
            kwargs["lr"] = base_lr
            optimizers[name] = self.make_optimizer(torch_groups, **kwargs)
        if not optimizers:
            raise FerbenchError(f"{self.run_name}: no trainable parameters in stage {self.stage!r}")
        return optimizers, self.lr_schedulers(optimizers)

    # -- steps (override) ------------------------------------------------------------------
    @abc.abstractmethod
    def training_step(self, batch: Batch, optimizers: Mapping[str, torch.optim.Optimizer] | None = None
                      ) -> dict[str, torch.Tensor]:
        """One iteration's losses ({"loss": ..., other logged terms}); with manual optimisation
        the method steps ``optimizers`` (by name) itself and returns only what to log."""

    def pretraining_step(self, batch: Batch, optimizers: Mapping[str, torch.optim.Optimizer] | None = None
                         ) -> dict[str, torch.Tensor]:
        raise FerbenchError(f"method {self.run_name!r} has no pretraining stage")

    def step(self, batch: Batch, optimizers: Mapping[str, torch.optim.Optimizer] | None = None
             ) -> dict[str, torch.Tensor]:
        """Dispatch on the stage (the engine calls this)."""
        fn = self.pretraining_step if self.stage == "pretrain" else self.training_step
        return fn(batch, optimizers) if self.manual_optimization else fn(batch)

    def on_step_end(self, step: int) -> None:
        """After each iteration's optimiser step (momentum encoders update here)."""

    def on_epoch_end(self, epoch: int) -> None:
        """After each epoch."""

    # -- evaluation and artefacts ----------------------------------------------------------
    @abc.abstractmethod
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Logits [B, n_classes] (classification) or valence/arousal [B, 2]."""

    @abc.abstractmethod
    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The encoder's features the head reads [B, D], D fixed for the method instance:
        ``predict(x)`` is the head applied to them. ``train`` writes them for the test set
        (``embeddings.parquet``) and the report draws their t-SNE."""

    def predict_with_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(predict(x), features(x))``; override to share one forward pass."""
        return self.predict(x), self.features(x)

    def extra_metrics(self) -> dict[str, Any]:
        """Method-specific numbers for metrics.json ``extra`` (plain floats/ints)."""
        return {}

    def encoder_modules(self) -> dict[str, nn.Module]:
        """The networks the pretraining stage hands to fine-tuning, by name. ``encoder.pt``
        stores each one's state under ``<name>.``; ``load_pretrained`` loads each one back
        strictly. Override to hand over more (or less) than the backbone."""
        return {}

    def encoder_state_dict(self) -> dict[str, torch.Tensor]:
        """encoder.pt ``state``: every encoder module's state, prefixed with its name."""
        modules = self.encoder_modules()
        if not modules:
            raise FerbenchError(f"method {self.run_name!r} declares no encoder modules")
        return {f"{name}.{key}": value for name, module in modules.items()
                for key, value in module.state_dict().items()}

    def load_pretrained(self, state: Mapping[str, torch.Tensor]) -> None:
        """Load every encoder module from ``state`` (KeyError/RuntimeError on a mismatch, which
        the engine turns into one line naming the encoder file)."""
        for name, module in self.encoder_modules().items():
            prefix = f"{name}."
            part = {key[len(prefix):]: value for key, value in state.items() if key.startswith(prefix)}
            if not part:
                raise KeyError(f"the encoder has no {name!r} weights ({prefix}*)")
            module.load_state_dict(part)
