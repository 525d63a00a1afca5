"""Search spaces written in Hydra's override grammar, sampled through Optuna distributions.

A space is a list of parameters, each an override key and a distribution:

- ``choice(a, b, ...)``            -> ``CategoricalDistribution``
- ``range(a, b[, step])``          -> ``IntDistribution`` (floats: ``FloatDistribution`` with a step);
  the stop is excluded, as in Hydra (``range(2, 9)`` is 2..8)
- ``interval(a, b)``               -> ``FloatDistribution(a, b)``
- ``tag(log, interval(a, b))``     -> ``FloatDistribution(a, b, log=True)``
- any plain value                  -> a fixed override, not searched

A parameter can be *conditional*: it is sampled only when an earlier choice took a given
option (``compression=prune`` -> ``compression.amount``). Its Optuna name carries the
condition (``compression.amount[compression=prune]``), so each branch has its own history.

Example:
    >>> space = parse_space({"optimizer.lr": "tag(log, interval(1e-4, 1e-1))"})
    >>> space.params[0].distribution
    FloatDistribution(high=0.1, log=True, low=0.0001, step=None)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sweeper.configs import flatten
from sweeper.errors import ConfigError

if TYPE_CHECKING:
    from hydra.core.override_parser.types import Override
    from optuna.distributions import BaseDistribution
    from optuna.trial import BaseTrial

__all__ = ["Condition", "Param", "SearchSpace", "parse_condition", "parse_space"]


@dataclass(frozen=True)
class Condition:
    """``key=option``: the parameter is active when the choice ``key`` took ``option``."""

    key: str
    option: str

    def __str__(self) -> str:
        return f"{self.key}={self.option}"


@dataclass(frozen=True)
class Param:
    """One searched override: ``key`` (as written, ``+`` prefix included) and its distribution."""

    key: str
    distribution: BaseDistribution
    condition: Condition | None = None

    @property
    def target(self) -> str:
        """The config key the value goes to (without ``+``/``++``)."""
        return self.key.lstrip("+")

    @property
    def name(self) -> str:
        """The Optuna parameter name."""
        return self.target if self.condition is None else f"{self.target}[{self.condition}]"


@dataclass
class SearchSpace:
    """Searched parameters (in sampling order) and fixed overrides."""

    params: list[Param] = field(default_factory=list)
    fixed: dict[str, str] = field(default_factory=dict)

    def sample(self, trial: BaseTrial) -> dict[str, Any]:
        """Suggest every active parameter on ``trial``; return target key -> value."""
        values: dict[str, Any] = {}
        for param in self.params:
            cond = param.condition
            if cond is not None and not (cond.key in values and str(values[cond.key]) == cond.option):
                continue
            values[param.target] = _suggest(trial, param.name, param.distribution)
        return values

    def values_from_params(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """Optuna ``trial.params`` -> target key -> value."""
        by_name = {p.name: p for p in self.params}
        return {by_name[n].target if n in by_name else n: v for n, v in params.items()}

    def overrides(self, values: Mapping[str, Any]) -> list[str]:
        """Hydra overrides for the fixed values and the sampled ``values`` (target -> value)."""
        keys = {p.target: p.key for p in self.params}
        result = [f"{key}={value}" for key, value in self.fixed.items()]
        result += [f"{keys.get(target, target)}={_format(value)}" for target, value in values.items()]
        return result

    def probe_overrides(self) -> list[list[str]]:
        """One override list per branch of the space (each choice a condition names), each
        parameter at a representative value, to check that the configs compose."""
        branches: list[Condition | None] = [None]
        branches += list(dict.fromkeys(p.condition for p in self.params if p.condition is not None))
        probes = []
        for branch in branches:
            values = {p.target: _representative(p.distribution) for p in self.params if p.condition is None}
            if branch is not None:
                values[branch.key] = branch.option
                values.update({p.target: _representative(p.distribution) for p in self.params if p.condition == branch})
            probes.append(self.overrides(values))
        return probes

    def grid(self) -> dict[str, list[Any]]:
        """Optuna parameter name -> every value, for the grid sampler.

        Conditional parameters take part in the product too (a trial ignores the inactive ones),
        so a conditional grid repeats some configurations.

        Raises:
            ConfigError: a parameter is continuous.
        """
        from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

        grid: dict[str, list[Any]] = {}
        for p in self.params:
            dist = p.distribution
            if isinstance(dist, CategoricalDistribution):
                grid[p.name] = list(dist.choices)
            elif isinstance(dist, IntDistribution) and not dist.log:
                grid[p.name] = list(range(dist.low, dist.high + 1, dist.step))
            elif isinstance(dist, FloatDistribution) and dist.step is not None:
                count = round((dist.high - dist.low) / dist.step) + 1
                grid[p.name] = [dist.low + i * dist.step for i in range(count)]
            else:
                raise ConfigError(
                    f"hydra.sweeper.params.{p.key}: sampler=grid needs choice(...) or range(...), not a continuous interval"
                )
        return grid


def _suggest(trial: BaseTrial, name: str, dist: BaseDistribution) -> Any:
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    if isinstance(dist, CategoricalDistribution):
        return trial.suggest_categorical(name, dist.choices)
    if isinstance(dist, IntDistribution):
        return trial.suggest_int(name, dist.low, dist.high, step=dist.step, log=dist.log)
    assert isinstance(dist, FloatDistribution), dist  # the space builds only these three
    return trial.suggest_float(name, dist.low, dist.high, step=dist.step, log=dist.log)


def _representative(dist: BaseDistribution) -> Any:
    choices = getattr(dist, "choices", None)
    return choices[0] if choices is not None else getattr(dist, "low")  # noqa: B009  (Int/Float distributions)


def _format(value: Any) -> str:
    if isinstance(value, str) and any(c in value for c in " ,=()[]{}'\"\\"):
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    return str(value)


def parse_condition(text: str) -> Condition:
    """``"compression=prune"`` -> ``Condition("compression", "prune")``."""
    key, sep, option = text.partition("=")
    if not sep or not key.strip() or not option.strip():
        raise ConfigError(
            f"hydra.sweeper.conditional_params.{text}: a condition is written key=option, e.g. compression=prune"
        )
    return Condition(key.strip(), option.strip())


def _distribution(override: Override, where: str) -> BaseDistribution:
    from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, RangeSweep
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    value = override.value()
    if isinstance(value, ChoiceSweep):
        choices = list(override.sweep_iterator())
        if not choices:
            raise ConfigError(f"{where}: empty choice(); give at least one option")
        plain = [c for c in choices if c is None or isinstance(c, bool | int | float | str)]
        if len(plain) != len(choices):
            raise ConfigError(f"{where}: choice() options must be numbers, strings, booleans or null")
        return CategoricalDistribution(plain)
    if isinstance(value, RangeSweep):
        if "log" in value.tags:
            raise ConfigError(f"{where}: tag(log, ...) applies to interval(a, b) only")
        start, stop, step = value.start, value.stop, value.step
        assert start is not None and stop is not None
        if step == 0:
            raise ConfigError(f"{where}: range step must not be 0")
        values = [float(v) for v in override.sweep_iterator() if isinstance(v, int | float)]  # the stop is excluded
        if not values:
            raise ConfigError(f"{where}: range({start}, {stop}, step={step}) is empty (the stop is excluded)")
        low, high = min(values), max(values)
        if all(isinstance(v, int) for v in (start, stop, step)):
            return IntDistribution(int(low), int(high), step=abs(int(step)))
        return FloatDistribution(float(low), float(high), step=abs(float(step)))
    if isinstance(value, IntervalSweep):
        assert value.start is not None and value.end is not None  # interval(a, b) always has both
        low, high = float(value.start), float(value.end)
        log = "log" in value.tags
        if not low < high:
            raise ConfigError(
                f"{where}: interval({low}, {high}) is empty or inverted; write interval(low, high) with low < high"
            )
        if log and low <= 0:
            raise ConfigError(f"{where}: tag(log, interval({low}, {high})) needs low > 0")
        return FloatDistribution(low, high, log=log)
    raise ConfigError(
        f"{where}: unsupported sweep {override.get_value_element_as_str()}; allowed: choice(...), range(a,b[,step]), "
        "interval(a,b), tag(log, interval(a,b))"
    )


def _parse(key: str, expr: Any, where: str) -> Override:
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        return OverridesParser.create().parse_override(f"{key}={expr}")
    except Exception as exc:  # Hydra's grammar errors are multi-line
        raise ConfigError(f"{where}: cannot parse {expr!r}: {' '.join(str(exc).split())}") from exc


def parse_space(
    params: Mapping[str, Any] | None = None,
    conditional: Mapping[str, Mapping[str, Any]] | None = None,
    *,
    arguments: list[str] | tuple[str, ...] = (),
) -> SearchSpace:
    """Build a :class:`SearchSpace` from ``hydra.sweeper.params``, its conditional part and CLI overrides.

    Args:
        params: override key -> expression (nested mappings are flattened to dotted keys).
        conditional: ``"key=option"`` -> {override key -> expression}, sampled only when the
            choice ``key`` took ``option``.
        arguments: command-line overrides; sweeps among them are searched (and replace a
            parameter of the same key), plain ones are fixed.

    Raises:
        ConfigError: an expression does not parse, is empty or inverted, or a condition names
            no choice or an option it does not have (the message names the key).
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser

    space = SearchSpace()
    searched: dict[str, Param] = {}
    for key, expr in flatten(params or {}).items():
        expr = "null" if expr is None else expr  # a YAML null fixes the key to null, as on the command line
        override = _parse(key, expr, f"hydra.sweeper.params.{key}")
        if override.is_sweep_override():
            searched[key] = Param(key, _distribution(override, f"hydra.sweeper.params.{key}"))
        else:
            space.fixed[key] = override.get_value_element_as_str()
    for override in OverridesParser.create().parse_overrides(list(arguments)):
        key = override.get_key_element()
        if override.is_sweep_override():
            searched.pop(key, None)
            searched[key] = Param(key, _distribution(override, key))
        else:
            space.fixed[key] = override.get_value_element_as_str()
    space.params = list(searched.values())

    for cond_text, group in (conditional or {}).items():
        cond = parse_condition(str(cond_text))
        parent = next((p for p in space.params if p.target == cond.key), None)
        where = f"hydra.sweeper.conditional_params.{cond_text}"
        choices = getattr(parent.distribution, "choices", None) if parent else None
        if choices is None:
            raise ConfigError(f"{where}: {cond.key} is not a choice(...) in hydra.sweeper.params")
        if cond.option not in [str(c) for c in choices]:
            raise ConfigError(
                f"{where}: {cond.option!r} is not an option of {cond.key}; allowed: {', '.join(map(str, choices))}"
            )
        for key, expr in flatten(group).items():
            override = _parse(key, expr, f"{where}.{key}")
            if not override.is_sweep_override():
                raise ConfigError(
                    f"{where}.{key}: give a sweep (choice, range, interval); fixed values go in hydra.sweeper.params"
                )
            space.params.append(Param(key, _distribution(override, f"{where}.{key}"), cond))
    if not space.params:
        raise ConfigError(
            "hydra.sweeper.params: nothing to search; give at least one choice(...), range(...) or interval(...)"
        )
    return space
