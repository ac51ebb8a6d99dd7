"""The configuration schema: structured configs registered in Hydra's ConfigStore.

Hydra validates every composed config against these dataclasses, so a misspelt key or a wrong type
fails at composition with Hydra's own message. Every numeric setting has its valid values in
``lstm_exp.runner.ranges.RANGES``, checked in ``__post_init__`` when ``typed_config`` turns the config into objects;
``lstm_exp.runner.validation.validate`` then refuses the settings that would do nothing.

Polymorphic groups (``task``, ``optim``) have one schema per option, stored as ``schema/<group>/<name>``
and pulled into each option's YAML with ``- /schema/<group>/<name>@_here_``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from difflib import get_close_matches
from enum import Enum

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf

from lstm_exp.common.errors import UserError
from lstm_exp.core.faults import PIECEWISE
from lstm_exp.core.heads import REDUCTIONS
from lstm_exp.core.init import BIAS_INITS, OUTPUT_INITS, SCHEMES
from lstm_exp.core.optim import CLIP_MODES
from lstm_exp.models.layout import BIAS_SHAPES, CONCATS, GATES, ORIENTATIONS, gate_of
from lstm_exp.runner import folders
from lstm_exp.runner.groups import help_groups
from lstm_exp.runner.ranges import in_range, require

Mode = Enum("Mode", ["train", "gradcheck", "diagnose"])
NanPolicy = Enum("NanPolicy", ["stop", "skip", "continue"])
ResumeFailed = Enum("ResumeFailed", ["run", "skip"])
DType = Enum("DType", ["float64", "float32"])
# option lists come from the registries that implement them: adding an option there adds it here
Reduction = Enum("Reduction", list(REDUCTIONS))
ClipMode = Enum("ClipMode", list(CLIP_MODES))
InitScheme = Enum("InitScheme", list(SCHEMES))
BiasInit = Enum("BiasInit", list(BIAS_INITS))
OutputInit = Enum("OutputInit", list(OUTPUT_INITS))
Fault = Enum("Fault", list(PIECEWISE))  # the catalogued mistakes one can train with
Concat = Enum("Concat", list(CONCATS))
Orientation = Enum("Orientation", list(ORIENTATIONS))
BiasShape = Enum("BiasShape", list(BIAS_SHAPES))


MAX_EXPERIMENT_NAME = 256  # MLflow's experiments.name column
MAX_RUN_NAME = 250  # MLflow's runs.name column


@dataclass
class TaskConfig:
    name: str = MISSING
    reduction: Reduction = Reduction.mean  # mean over batch x time, or sum over time (the seeds' choice)

    def __post_init__(self):
        in_range(self, "task.")


@dataclass
class X2Config(TaskConfig):
    name: str = "x2"
    timesteps: int = 100  # seed 001: 600 points as 100 steps of 6
    width: int = 6  # outputs per step (and inputs): x and x^2 over a window of this many points
    noise: float = 0.005  # std of the target noise, seed 001's 1/200


@dataclass
class SinConfig(TaskConfig):
    name: str = "sin"
    seq_len: int = 30  # steps per sequence
    horizon: int = 1  # predict x_{t+horizon}; seed 002's np.roll(x, 1) is horizon -1
    period: float = 20.0  # samples per cycle
    noise: float = 0.0  # std of the noise added to the inputs


@dataclass
class CharConfig(TaskConfig):
    name: str = "char"
    corpus: str | None = None  # a UTF-8 text file; null: Python's built-in help text
    max_corpus_mb: float = 200.0  # a larger corpus file is refused (it is held in memory, 8 bytes a character)
    seq_len: int = 25  # truncated-BPTT chunk length
    sample_every: int = 250  # print a sample every N steps, and one at the end (0: no samples)
    sample_length: int = 200  # characters per sample
    temperature: float = 1.0  # sampling temperature (lower: more likely characters)


@dataclass
class ModelConfig:
    hidden: int = 64  # hidden units H
    dtype: DType = DType.float64  # the precision of the whole run
    fault: Fault | None = None  # a deliberately wrong backward reproducing a seed's bug (lstm_exp.core.faults)
    impl: str | None = None  # a user's own LSTM, "file.py:Name" or "package.module:Name" (null: the core)

    def __post_init__(self):
        in_range(self, "model.")
        require(
            self.impl is None or ":" in self.impl,
            "model.impl",
            self.impl,
            "must be <file.py>:<Name> or <module>:<Name> (null: the built-in core)",
        )
        require(
            self.impl is None or self.fault is None,
            "model.fault",
            self.fault and self.fault.name,
            "injects a bug into the built-in core; it cannot be combined with model.impl",
        )
        require(
            self.impl is None or self.dtype == DType.float64,
            "model.dtype",
            self.dtype.name,
            "a user implementation (model.impl) is fed float64 arrays; use model.dtype=float64",
        )


@dataclass
class GateParams:
    W: str | None = None  # one matrix over [x, h] or [h, x] (concat: xh or hx)
    Wx: str | None = None  # the input weights (concat: separate)
    Wh: str | None = None  # the recurrent weights (concat: separate)
    b: str | None = None  # the bias (ignored for bias: none)
    b2: str | None = None  # a second bias added to b (PyTorch's bias_hh beside bias_ih)


@dataclass
class OutputParams:
    W: str = MISSING
    b: str | None = None
    orientation: Orientation | None = None  # null: as the gates
    bias: BiasShape | None = None  # null: as the gates


@dataclass
class LayoutConfig:
    """How a user's LSTM names and shapes its parameters (lstm_exp.models.layout); conf/layout/ holds presets."""

    name: str = MISSING
    concat: Concat = Concat.separate  # separate: Wx and Wh; xh: one matrix over [x, h]; hx; bxh: [1, x, h] (bias row)
    orientation: Orientation = Orientation.right  # right: z @ W, W (in, out); left: W @ z, W (out, in)
    bias: BiasShape = BiasShape.flat  # flat (n,), column (n, 1), row (1, n), none
    gate_order: str = GATES  # order of the gate blocks inside a parameter shared by several gates
    gates: dict[str, GateParams] = field(default_factory=dict)  # i, f, g (or c), o
    output: OutputParams = field(default_factory=OutputParams)

    def __post_init__(self):
        resolved = sorted(gate_of(k) for k in self.gates)
        require(
            resolved == sorted(GATES),
            "layout.gates",
            ",".join(map(str, self.gates)),
            "must describe each gate i, f, g (or c), o exactly once",
        )
        needs = ("Wx", "Wh") if self.concat == Concat.separate else ("W",)
        for gate, spec in self.gates.items():
            missing = [f for f in needs if getattr(spec, f) is None]
            require(
                not missing,
                f"layout.gates.{gate}",
                ",".join(missing) or "-",
                f"concat={self.concat.name} needs {' and '.join(needs)} for every gate",
            )
            require(
                "b" not in self.concat.name or (spec.b is None and spec.b2 is None),
                f"layout.gates.{gate}.b",
                spec.b or spec.b2,
                f"concat={self.concat.name} keeps the bias as a row of {spec.W}; name no separate bias",
            )


@dataclass
class InitConfig:
    scheme: InitScheme = InitScheme.xavier  # weight scheme
    std: float = 0.1  # for scheme=normal
    bias: BiasInit = BiasInit.zeros  # the gates' biases
    forget_bias: float = 0.0  # added to the forget gate's bias
    output: OutputInit = OutputInit.scheme  # seed 001 initialises the output layer with ones

    def __post_init__(self):
        in_range(self, "init.")


@dataclass
class OptimConfig:
    name: str = MISSING
    lr: float = MISSING  # learning rate
    clip: float | None = None  # null or 0: off
    clip_mode: ClipMode = ClipMode.norm  # norm: global L2 norm; value: elementwise; state: BPTT carries dh/dc

    def __post_init__(self):
        in_range(self, "optim.")

    def hyper(self) -> dict:
        """The optimizer's own hyper-parameters (everything but name, lr and clipping)."""
        common = set(OptimConfig.__dataclass_fields__)
        return {k: getattr(self, k) for k in self.__dataclass_fields__ if k not in common}


@dataclass
class SGDConfig(OptimConfig):
    name: str = "sgd"
    lr: float = 0.1


@dataclass
class MomentumConfig(OptimConfig):
    name: str = "momentum"
    lr: float = 0.05
    beta: float = 0.9  # velocity decay


@dataclass
class AdagradConfig(OptimConfig):
    name: str = "adagrad"
    lr: float = 0.1
    eps: float = 1e-8  # added under the square root


@dataclass
class RMSPropConfig(OptimConfig):
    name: str = "rmsprop"
    lr: float = 0.005
    decay: float = 0.9  # decay of the squared-gradient average
    eps: float = 1e-8  # added to the root


@dataclass
class AdamConfig(OptimConfig):
    name: str = "adam"
    lr: float = 0.01
    b1: float = 0.9  # first-moment decay
    b2: float = 0.999  # second-moment decay
    eps: float = 1e-8  # added to the root


@dataclass
class NanConfig:
    policy: NanPolicy = NanPolicy.stop  # stop the run / skip the update / continue regardless
    loss_ratio: float = 10.0  # diverged when the loss reaches this multiple of its first value (0: off)
    history: int = 50  # steps of loss / grad norm / max |c| kept to explain a divergence

    def __post_init__(self):
        in_range(self, "nan.")


@dataclass
class TrackingConfig:
    enabled: bool = True
    uri: str | None = None  # null: sqlite:///mlflow.db in the launch folder (or MLFLOW_TRACKING_URI if set)
    experiment: str | None = None  # null: the task's name
    run_name: str | None = None  # null: what the job is and varies, e.g. "sin adam clip=6 seed=3"
    log_every: int = 100  # write the buffered metrics to MLflow every N steps (one log_batch call)
    system_metrics: bool = True  # MLflow's monitor: CPU, memory, disk, network as system/* metrics

    def __post_init__(self):
        in_range(self, "tracking.")
        if self.experiment is not None:
            require(
                self.experiment.strip() != "", "tracking.experiment", "''", "must not be empty (null: the task's name)"
            )
            require(
                len(self.experiment) <= MAX_EXPERIMENT_NAME,
                "tracking.experiment",
                f"<{len(self.experiment)} characters>",
                f"MLflow keeps experiment names of at most {MAX_EXPERIMENT_NAME} characters",
            )
        if self.run_name is not None:
            require(
                len(self.run_name) <= MAX_RUN_NAME,
                "tracking.run_name",
                f"<{len(self.run_name)} characters>",
                f"MLflow keeps run names of at most {MAX_RUN_NAME} characters",
            )


@dataclass
class CheckpointConfig:
    every: int = 500  # write run_dir/checkpoint.npz every N steps (0: only on Ctrl-C / SIGTERM)

    def __post_init__(self):
        in_range(self, "checkpoint.")


@dataclass
class Config:
    task: TaskConfig = MISSING
    model: ModelConfig = MISSING
    init: InitConfig = MISSING
    optim: OptimConfig = MISSING
    tracking: TrackingConfig = MISSING
    seed: int = 0  # one generator from it drives everything: same config and seed, same numbers
    steps: int = 1000  # parameter updates
    batch_size: int = 32  # sequences per step
    log_every: int = 10  # measure metrics every N steps (tracking.log_every: how often they are written)
    eval_every: int = 100  # score the task's held-out data every N steps
    mode: Mode = Mode.train  # train; check the core's gradients; diagnose a model against the core
    blas_threads: int = 1  # BLAS threads for the core (the benchmark's finding: 1 is faster at these sizes)
    progress: bool = True  # tqdm progress bar
    nan: NanConfig = field(default_factory=NanConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    resume: str | None = None  # a run folder, checkpoint or MLflow run id to continue; or a sweep folder to finish
    resume_failed: ResumeFailed = ResumeFailed.run  # finishing a sweep: run its failed jobs again, or skip them
    converge_ratio: float = 0.1  # a finished run whose final loss is <= this x its first is "converged"
    layout: LayoutConfig | None = None  # how model.impl's parameters map onto the core's (conf/layout/)

    def __post_init__(self):
        in_range(self, "")
        state_clip = self.optim.clip_mode == ClipMode.state and bool(self.optim.clip)
        require(
            self.model.impl is None or not state_clip,
            "optim.clip_mode",
            "state",
            "clamps the core's internal BPTT carries, which a user implementation (model.impl) does not "
            "expose; use optim.clip_mode=norm or value",
        )


TASK_SCHEMAS = {"x2": X2Config, "sin": SinConfig, "char": CharConfig}
OPTIM_SCHEMAS = {
    "sgd": SGDConfig,
    "momentum": MomentumConfig,
    "adagrad": AdagradConfig,
    "rmsprop": RMSPropConfig,
    "adam": AdamConfig,
}


def register() -> None:
    """Store the schemas in Hydra's ConfigStore, and the ``fresh`` folder resolver and ``--help``'s ``groups`` in
    OmegaConf (idempotent)."""
    folders.register()
    OmegaConf.register_new_resolver("groups", help_groups, replace=True)
    cs = ConfigStore.instance()
    cs.store(name="base_config", node=Config)
    cs.store(group="schema", name="layout", node=LayoutConfig)
    for name, node in TASK_SCHEMAS.items():
        cs.store(group="schema/task", name=name, node=node)
    for name, node in OPTIM_SCHEMAS.items():
        cs.store(group="schema/optim", name=name, node=node)


def restore(plain: DictConfig) -> DictConfig:
    """A saved composed config (e.g. a run's .hydra/config.yaml) typed against the schema again."""
    typed = OmegaConf.structured(Config)
    typed.task = OmegaConf.structured(TASK_SCHEMAS[plain.task.name])
    typed.optim = OmegaConf.structured(OPTIM_SCHEMAS[plain.optim.name])
    for key, node in (("model", ModelConfig), ("init", InitConfig), ("tracking", TrackingConfig)):
        typed[key] = OmegaConf.structured(node)
    if plain.get("layout") is not None:
        typed.layout = OmegaConf.structured(LayoutConfig)
    return OmegaConf.merge(typed, plain)


def unknown_keys(node: DictConfig, prefix: str = "") -> list[str]:
    """Keys that are not fields of their node's schema (``+optim.clipp=6`` slips past Hydra's check)."""
    found = []
    schema = OmegaConf.get_type(node)
    known = getattr(schema, "__dataclass_fields__", None)
    for key in node.keys():
        path = f"{prefix}{key}"
        if known is not None and key not in known:
            close = get_close_matches(str(key), list(known), n=1)
            found.append(path + (f" (did you mean {prefix}{close[0]}?)" if close else ""))
        child = node._get_node(key)
        if isinstance(child, DictConfig) and not child._is_missing() and not child._is_none():
            found += unknown_keys(child, f"{path}.")
    return found


def typed_config(cfg: DictConfig) -> Config:
    """The composed config as typed objects, with every range check run; raises UserError."""
    extra = unknown_keys(cfg)
    if extra:
        raise UserError(f"unknown setting {', '.join(extra)}; see python -m lstm_exp --cfg job for every key")
    try:
        return OmegaConf.to_object(cfg)
    except UserError:
        raise
    except Exception as e:  # OmegaConf wraps errors raised in __post_init__
        cause = e.__cause__ or e.__context__
        if isinstance(cause, UserError):
            raise cause from None
        raise UserError(str(e).splitlines()[0]) from None


def plain(typed: Config) -> dict:
    """A validated config as plain containers (enums as their names), e.g. for MLflow params or YAML."""
    return OmegaConf.to_container(OmegaConf.structured(typed), resolve=True, enum_to_str=True)


def experiment_name(cfg) -> str:
    """The MLflow experiment a config's runs go to: ``tracking.experiment``, else the task's name (a validated
    config or a composed one)."""
    return cfg.tracking.experiment or cfg.task.name
